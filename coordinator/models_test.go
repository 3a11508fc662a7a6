package coordinator_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// staticModel serves one version.
type staticModel struct {
	version uint64
	tensors []protocol.TensorRef
	raw     []byte // the tensors' bytes, little-endian, as a blob file holds them
	hash    protocol.Hash
}

func newStaticModel(t testing.TB, version uint64, sizes ...int) *staticModel {
	r := rand.New(rand.NewPCG(version, 1))
	m := &staticModel{version: version}
	for i, n := range sizes {
		v := make([]float32, n)
		for j := range v {
			v[j] = r.Float32()
		}
		m.tensors = append(m.tensors, protocol.TensorRef{Info: protocol.TensorInfo{Name: "w" + string(rune('0'+i)), DType: protocol.DTypeF32, Shape: []int{n}}, F32: v})
	}
	h, err := protocol.WriteTensors(io.Discard, m.tensors, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.hash = h
	for _, t := range m.tensors {
		for _, v := range t.F32 {
			m.raw = binary.LittleEndian.AppendUint32(m.raw, math.Float32bits(v))
		}
	}
	return m
}

func (m *staticModel) Model(version uint64, hash protocol.Hash) (*coordinator.ModelStream, error) {
	if version != m.version {
		return nil, protocol.NewError(protocol.CodeNotFound, "no version %d", version)
	}
	if !hash.IsZero() && hash != m.hash {
		return nil, protocol.NewError(protocol.CodeHashMismatch, "version %d has another hash", version)
	}
	ms := &coordinator.ModelStream{Sum: m.hash, Data: io.NopCloser(bytes.NewReader(m.raw))}
	for _, t := range m.tensors {
		ms.Layout = append(ms.Layout, t.Info)
	}
	return ms, nil
}

// readAll reads every tensor of a stream into fresh slices.
func readAll(tr *protocol.TensorReader) ([][]float32, error) {
	var out [][]float32
	for {
		info, ok := tr.Next()
		if !ok {
			return out, nil
		}
		v := make([]float32, info.NumElements())
		if err := tr.ReadInto(v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

func TestModelDownload(t *testing.T) {
	c := newCluster(t)
	m := newStaticModel(t, 3, 1000, 7)
	c.srv.SetModels(m)
	ra := startAgent(t, c.enroll("dl"), nil)
	ra.wait(t, agent.Connected, 10*time.Second)
	ctx := context.Background()
	var got [][]float32
	err := ra.d.FetchModel(ctx, 3, m.hash, func(tr *protocol.TensorReader) error {
		var err error
		got, err = readAll(tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0][999] != m.tensors[0].F32[999] || got[1][6] != m.tensors[1].F32[6] {
		t.Fatal("downloaded tensors differ")
	}
	bad := m.hash
	bad[0] ^= 1
	for _, tc := range []struct {
		version uint64
		hash    protocol.Hash
		code    protocol.ErrorCode
	}{{4, protocol.Hash{}, protocol.CodeNotFound}, {3, bad, protocol.CodeHashMismatch}} {
		err := ra.d.FetchModel(ctx, tc.version, tc.hash, func(tr *protocol.TensorReader) error { _, err := readAll(tr); return err })
		if protocol.CodeOf(err) != tc.code {
			t.Errorf("FetchModel(%d) = %v, want %v", tc.version, err, tc.code)
		}
	}
	// The session survived the refusals.
	if err := ra.d.FetchModel(ctx, 3, protocol.Hash{}, func(tr *protocol.TensorReader) error { _, err := readAll(tr); return err }); err != nil {
		t.Fatal(err)
	}
}

const benchModelFloats = 10 << 20 // 40 MiB of float32

// BenchmarkModelDownload40MB times one agent downloading a 40 MiB model over QUIC on
// loopback, into a preallocated buffer.
func BenchmarkModelDownload40MB(b *testing.B) {
	c := newCluster(b)
	m := newStaticModel(b, 1, benchModelFloats)
	c.srv.SetModels(m)
	ra := startAgentB(b, c)
	dst := make([]float32, benchModelFloats)
	b.SetBytes(4 * benchModelFloats)
	for b.Loop() {
		if err := ra.FetchModel(context.Background(), 1, m.hash, func(tr *protocol.TensorReader) error {
			tr.Next()
			return tr.ReadInto(dst)
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBroadcast40MBTo10Agents times ten agents downloading the same 40 MiB model at
// once: one op is the whole broadcast, done when the last agent has verified its copy.
func BenchmarkBroadcast40MBTo10Agents(b *testing.B) {
	c := newCluster(b)
	m := newStaticModel(b, 1, benchModelFloats)
	c.srv.SetModels(m)
	const n = 10
	agents := make([]*agent.Daemon, n)
	dst := make([][]float32, n)
	for i := range agents {
		agents[i] = startAgentB(b, c)
		dst[i] = make([]float32, benchModelFloats)
	}
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, d := range agents {
			wg.Go(func() {
				errs <- d.FetchModel(context.Background(), 1, m.hash, func(tr *protocol.TensorReader) error {
					tr.Next()
					return tr.ReadInto(dst[i])
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/broadcast")
}

// BenchmarkRawQUIC40MB is the comparator for BenchmarkModelDownload40MB: bare quic-go,
// one stream carrying 40 MiB from a client to a server that hashes it and answers with
// the SHA-256 (the experiment of ../shared/notes/dependencies.md), with fedq's TLS and
// QUIC settings and sockets (transport.ListenUDP) but no fedq protocol.
func BenchmarkRawQUIC40MB(b *testing.B) {
	dir := b.TempDir()
	auth, err := ca.Init(dir, ca.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pc, err := transport.ListenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // fedq's sockets, as the coordinator's
	if err != nil {
		b.Fatal(err)
	}
	qt := &quic.Transport{Conn: pc}
	defer transport.CloseTransport(qt)
	ln, err := qt.Listen(transport.ServerTLS(auth.ServerCert, auth.CAPool()), transport.QUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					h := sha256.New()
					_, _ = io.Copy(h, st)
					_, _ = st.Write(h.Sum(nil))
					_ = st.Close()
				}
			}()
		}
	}()
	tr, err := transport.NewClientTransport()
	if err != nil {
		b.Fatal(err)
	}
	defer transport.CloseTransport(tr)
	conn, err := transport.Dial(context.Background(), tr, ln.Addr().String(), transport.ClientTLS(auth.CACert, tls.Certificate{}))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	payload := make([]byte, 4*benchModelFloats)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		st, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Write(payload); err != nil {
			b.Fatal(err)
		}
		_ = st.Close()
		if _, err := io.ReadAll(st); err != nil {
			b.Fatal(err)
		}
	}
}
