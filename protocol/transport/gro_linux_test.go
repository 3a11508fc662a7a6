//go:build linux

package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groPair returns a groConn listening on loopback and a plain UDP socket to send to it.
func groPair(t *testing.T, network string, ip net.IP) (*groConn, *net.UDPConn) {
	t.Helper()
	pc, err := ListenUDP(&net.UDPAddr{IP: ip})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { pc.Close() })
	gc, ok := pc.(*groConn)
	if !ok {
		t.Skip("the kernel refused UDP_GRO")
	}
	src, err := net.DialUDP("udp", &net.UDPAddr{IP: ip}, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return gc, src
}

// sendGSO sends payload as one send of segments of seg bytes (UDP_SEGMENT), as
// quic-go's GSO does.
func sendGSO(t *testing.T, c *net.UDPConn, payload []byte, seg int) {
	t.Helper()
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	oob[unix.CmsgLen(0)], oob[unix.CmsgLen(0)+1] = byte(seg), byte(seg>>8) // little-endian uint16
	if _, _, err := c.WriteMsgUDP(payload, oob, nil); err != nil {
		t.Skipf("no UDP GSO here: %v", err)
	}
}

func newMessages(n, size int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, size)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// readAll reads datagrams with batches of ms until want have come.
func readAll(t *testing.T, c *groConn, ms []ipv4.Message, want int) [][]byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got [][]byte
	for len(got) < want {
		n, err := c.ReadBatch(ms, 0)
		if err != nil {
			t.Fatalf("ReadBatch after %d datagrams: %v", len(got), err)
		}
		for _, m := range ms[:n] {
			if a, ok := m.Addr.(*net.UDPAddr); !ok || a.Port == 0 {
				t.Fatalf("datagram without a sender: %v", m.Addr)
			}
			got = append(got, append([]byte(nil), m.Buffers[0][:m.N]...))
		}
	}
	return got
}

func TestGROSplitsCoalescedDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		ip      net.IP
		size    int // payload of the GSO send
		seg     int
		batch   int // messages per ReadBatch
	}{
		{"ipv4, 10 full segments, batch 8", "udp4", net.IPv4(127, 0, 0, 1), 10 * 1452, 1452, 8},
		{"ipv4, short last segment, batch 3", "udp4", net.IPv4(127, 0, 0, 1), 7*1200 + 17, 1200, 3},
		{"ipv4, one datagram at a time", "udp4", net.IPv4(127, 0, 0, 1), 5 * 1000, 1000, 1},
		{"ipv6, 44 segments, batch 8", "udp6", net.IPv6loopback, 44 * 1452, 1452, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, src := groPair(t, tc.network, tc.ip)
			payload := make([]byte, tc.size)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			sendGSO(t, src, payload, tc.seg)
			// A plain datagram after the run: it must come out whole, after the run.
			if _, err := src.Write([]byte("plain")); err != nil {
				t.Fatal(err)
			}
			want := (tc.size + tc.seg - 1) / tc.seg
			// The first datagram alone: the rest of the run must be waiting in c, as
			// one coalesced receive, not in the kernel as separate datagrams.
			got := readAll(t, c, newMessages(1, 1452), 1)
			if c.batch == nil || c.end <= c.seg {
				t.Fatal("the segments came as separate datagrams: the socket does not coalesce")
			}
			got = append(got, readAll(t, c, newMessages(tc.batch, 1452), want)...)
			if len(got) != want+1 {
				t.Fatalf("got %d datagrams, want %d", len(got), want+1)
			}
			for i := range want {
				end := min((i+1)*tc.seg, tc.size)
				if !bytes.Equal(got[i], payload[i*tc.seg:end]) {
					t.Fatalf("datagram %d: %d bytes, not segment %d of the send", i, len(got[i]), i)
				}
			}
			if string(got[want]) != "plain" {
				t.Fatalf("last datagram %q, want %q", got[want], "plain")
			}
		})
	}
}

func TestGROSendersOfABatch(t *testing.T) {
	c, a := groPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	b, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// 20 small datagrams, alternating in runs between two senders: more than one
	// receive's batch, so the batch boundary and the sender changes are both crossed.
	senders := []*net.UDPConn{a, a, a, b, b, a, b, a, a, a, a, a, b, b, b, b, a, b, a, a}
	for i, s := range senders {
		if _, err := s.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ms := newMessages(3, 1452)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []*net.UDPAddr
	var payload []byte
	for len(got) < len(senders) {
		n, err := c.ReadBatch(ms, 0)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		for _, m := range ms[:n] {
			got = append(got, m.Addr.(*net.UDPAddr))
			payload = append(payload, m.Buffers[0][:m.N]...)
		}
	}
	for i, s := range senders {
		want := s.LocalAddr().(*net.UDPAddr)
		if !got[i].IP.Equal(want.IP) || got[i].Port != want.Port || payload[i] != byte(i) {
			t.Fatalf("datagram %d: %q from %v, want %q from %v", i, payload[i], got[i], byte(i), want)
		}
		if i > 0 && senders[i] == senders[i-1] && got[i] != got[i-1] {
			t.Errorf("datagrams %d and %d of one sender got two addresses; the second should share the first", i-1, i)
		}
	}
}

func TestGROReadAfterClose(t *testing.T) {
	c, _ := groPair(t, "udp4", net.IPv4(127, 0, 0, 1))
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch(newMessages(8, 1452), 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
}

// QUIC runs over GRO sockets on both loopbacks: a handshake with mutual TLS and 8 MB
// each way, arriving intact (the coalesced runs split back into quic-go's packets).
func TestQUICOverGRO(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		t.Run(ip.String(), func(t *testing.T) {
			if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip}); err != nil {
				t.Skipf("no %s here: %v", ip, err)
			} else {
				c.Close()
			}
			client, server := loopbackConns(t, ip)
			payload := make([]byte, 8<<20)
			for i := range payload {
				payload[i] = byte(i * 31 >> 7)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			echo := make(chan error, 1)
			go func() {
				st, err := server.AcceptStream(ctx)
				if err == nil {
					_, err = io.Copy(st, st) // echo until the client's FIN
					st.Close()
				}
				echo <- err
			}()
			st, err := client.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = st.Write(payload)
				st.Close()
			}()
			got, err := io.ReadAll(st)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-echo; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("echoed %d bytes, not the %d sent", len(got), len(payload))
			}
		})
	}
}

// CloseTransport closes a client transport's socket: quic.Transport.Close alone leaves
// open a socket it was given, one file descriptor per enrollment or admin command.
func TestCloseTransportClosesSocket(t *testing.T) {
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(entries)
	}
	before := fds()
	for range 20 {
		tr, err := NewClientTransport()
		if err != nil {
			t.Fatal(err)
		}
		if err := CloseTransport(tr); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d file descriptors open before 20 client transports, %d after closing them", before, after)
	}
}
