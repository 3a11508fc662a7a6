//go:build unix

package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/protocol"
)

// cpuTime returns the CPU time (user + system) this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQUICTensorStream40MB sends a 40 MB model (one F32 tensor, as the round
// benchmark's) from one side of a loopback QUIC connection to the other and reads it
// with ReadParams: "upload" writes it from memory as an agent does (TensorWriter.Write)
// without a digest, as agents upload to a coordinator that offers undigested uploads;
// "upload/sha256" hashes it at both ends, as before; "download" (hashed) from a reader
// as a coordinator
// serves a stored version (TensorWriter.WriteRaw with the known hash, its buffer of
// ChunkSize). Besides the time it reports cpu-ms/op, the CPU both ends used (they share
// this process), which on a busy host is steadier than the time, and the sender's
// congestion window, smoothed RTT and packets declared lost at the end.
func BenchmarkQUICTensorStream40MB(b *testing.B) {
	const n = 10 << 20
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i%1000) * 1e-3
	}
	raw, ok := protocol.LittleEndianBytes(src)
	if !ok {
		b.Skip("the download case reads the weights' memory as its blob")
	}
	sum := protocol.HashWeights(src)
	dst := make([]float32, n)
	layout := []protocol.TensorInfo{{Name: "w", DType: protocol.DTypeF32, Shape: []int{n}}}
	refs := protocol.ParamRefs(layout, src)
	for _, c := range []struct {
		name   string
		chunk  int
		digest protocol.Digest
	}{{"upload", 0, protocol.DigestNone}, {"upload/sha256", 0, protocol.DigestSHA256},
		{"download/chunk=64KiB", 64 << 10, ""}, {"download/chunk=256KiB", 256 << 10, ""}, {"download/chunk=1MiB", 1 << 20, ""}} {
		b.Run(c.name, func(b *testing.B) {
			client, server := benchConns(b)
			tw := protocol.NewTensorWriter(protocol.Limits{ChunkSize: c.chunk})
			if err := tw.SetDigest(c.digest); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(4 * n)
			ctx := context.Background()
			cpu0 := cpuTime(b)
			for b.Loop() {
				errc := make(chan error, 1)
				go func() {
					st, err := server.AcceptStream(ctx)
					if err != nil {
						errc <- err
						return
					}
					if c.chunk == 0 {
						_, err = tw.Write(st, refs, nil)
					} else {
						err = tw.WriteRaw(st, layout, nil, sum, bytes.NewReader(raw))
					}
					st.Close()
					// Read the client's byte and FIN, so that the stream is released
					// and the connection's stream credit returns (see EndRead).
					Discard(st)
					errc <- err
				}()
				st, err := client.OpenStreamSync(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := st.Write([]byte{0}); err != nil { // the server sees a stream once it has data
					b.Fatal(err)
				}
				tr, err := protocol.NewTensorReader(st, protocol.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				if err := protocol.ReadParams(tr, layout, dst); err != nil {
					b.Fatal(err)
				}
				if err := tr.Finish(); err != nil {
					b.Fatal(err)
				}
				st.Close()
				Discard(st)
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			// The sender's congestion state at the end, to compare with the agents'
			// ("update sent" in `fedq bench rounds --verbose`).
			st := server.ConnectionStats()
			b.ReportMetric(float64(st.CongestionWindow)/1e3, "cwnd-KB")
			b.ReportMetric(float64(st.SmoothedRTT.Microseconds()), "srtt-µs")
			b.ReportMetric(float64(st.PacketsLost), "lost")
		})
	}
}

// BenchmarkQUICParallelDownloads40MB sends a 40 MB model on each of conns loopback
// connections at once (one op: all of them), as a coordinator serves a round's
// downloads, with the default chunk size and windows of QUICConfig. cpu-ms/op is the
// CPU both ends used per op, so per 40 MB it is cpu-ms/op ÷ conns.
func BenchmarkQUICParallelDownloads40MB(b *testing.B) {
	const n = 10 << 20
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i%1000) * 1e-3
	}
	layout := []protocol.TensorInfo{{Name: "w", DType: protocol.DTypeF32, Shape: []int{n}}}
	refs := protocol.ParamRefs(layout, src)
	for _, conns := range []int{1, 4, 10} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			type pair struct{ client, server *quic.Conn }
			pairs := make([]pair, conns)
			dsts := make([][]float32, conns)
			for i := range pairs {
				pairs[i].client, pairs[i].server = benchConns(b)
				dsts[i] = make([]float32, n)
			}
			b.SetBytes(int64(4 * n * conns))
			ctx := context.Background()
			cpu0 := cpuTime(b)
			for b.Loop() {
				errc := make(chan error, 2*conns)
				for i, p := range pairs {
					go func() {
						st, err := p.server.AcceptStream(ctx)
						if err == nil {
							_, err = protocol.NewTensorWriter(protocol.Limits{}).Write(st, refs, nil)
							st.Close()
						}
						errc <- err
					}()
					go func() {
						errc <- func() error {
							st, err := p.client.OpenStreamSync(ctx)
							if err != nil {
								return err
							}
							if _, err := st.Write([]byte{0}); err != nil {
								return err
							}
							st.Close()
							tr, err := protocol.NewTensorReader(st, protocol.Limits{})
							if err != nil {
								return err
							}
							if err := protocol.ReadParams(tr, layout, dsts[i]); err != nil {
								return err
							}
							if err := tr.Finish(); err != nil {
								return err
							}
							_, _ = io.Copy(io.Discard, st)
							return nil
						}()
					}()
				}
				for range 2 * conns {
					if err := <-errc; err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			var sent, lost, bytes uint64
			for _, p := range pairs {
				st := p.server.ConnectionStats()
				sent, lost, bytes = sent+st.PacketsSent, lost+st.PacketsLost, bytes+st.BytesSent
			}
			b.ReportMetric(float64(lost)/float64(sent)*100, "%lost")
			b.ReportMetric(float64(bytes)/float64(sent), "B/packet")
		})
	}
}
