//go:build linux

package transport

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groBufferSize holds the largest UDP payload, so a coalesced datagram is never cut.
const groBufferSize = 1 << 16

// groOOBSize holds the control messages a quic-go socket asks for (packet info, TOS or
// traffic class) and the GRO segment size.
const groOOBSize = 256

// groBatchSize is how many datagrams (each a coalesced run or a single one) one
// receive may take: quic-go's own batch.
const groBatchSize = 8

// newGROBatch returns messages for one receive of up to groBatchSize datagrams, each
// with room for a whole coalesced run and its control messages. A socket allocates its
// batch (≈ 0.5 MiB) at its first receive and keeps it for its life.
func newGROBatch() []ipv4.Message {
	ms := make([]ipv4.Message, groBatchSize)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, groBufferSize)}
		ms[i].OOB = make([]byte, groOOBSize)
	}
	return ms
}

// groConn is a UDP socket that receives with generic receive offload (UDP_GRO): the
// kernel hands over a run of datagrams from one sender in one piece, with the size of
// its segments, instead of one datagram per receive slot, and up to groBatchSize runs
// or datagrams at a time. ReadBatch — which quic-go calls in place of its own recvmmsg
// when the socket offers it — splits the runs back into datagrams. On loopback, where
// quic-go's GSO sends arrive still coalesced, this saves the kernel segmenting every
// run and the receiver most of its system calls.
//
// Only quic-go's read loop calls ReadBatch; it is not safe for concurrent use with
// itself. Everything else is the embedded *net.UDPConn.
type groConn struct {
	*net.UDPConn
	pc *ipv4.PacketConn // x/net's batched reads (recvmmsg) of the same socket

	// The received batch being handed out: count datagrams, the current one i, of
	// which data[off:end] is left, in segments of seg, with the control messages oob
	// (GRO's removed) and the sender from (kept after the batch, to be shared with the
	// next datagram of the same sender).
	batch         []ipv4.Message // allocated by the first read
	count, i      int
	off, end, seg int
	oob           []byte
	from          *net.UDPAddr
}

// ListenUDP opens a UDP socket on addr for a quic.Transport, receiving with UDP_GRO
// where the kernel supports it (Linux 5.0 and later) and plainly otherwise.
func ListenUDP(addr *net.UDPAddr) (net.PacketConn, error) {
	uc, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return uc, nil
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return uc, nil // no GRO: quic-go's own batched reads
	}
	return &groConn{UDPConn: uc, pc: ipv4.NewPacketConn(uc)}, nil
}

// ReadBatch fills ms with received datagrams, at least one, blocking until there is
// one; quic-go's batch reader interface (the flags are not used).
func (c *groConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	for {
		if n := c.drain(ms); n > 0 || len(ms) == 0 {
			return n, nil
		}
		if c.batch == nil {
			c.batch = newGROBatch()
		}
		n, err := c.pc.ReadBatch(c.batch, 0)
		if err != nil {
			return 0, err // the batch is drained: a later read starts afresh
		}
		c.count, c.i, c.off, c.end = n, -1, 0, 0
	}
}

// drain copies segments of the received batch into ms and returns how many, moving
// to the batch's next datagram when one is used up.
func (c *groConn) drain(ms []ipv4.Message) int {
	n := 0
	for n < len(ms) {
		if c.off >= c.end && !c.next() {
			break
		}
		next := min(c.off+c.seg, c.end)
		m := &ms[n]
		m.N = copy(m.Buffers[0], c.batch[c.i].Buffers[0][c.off:next])
		m.NN = copy(m.OOB, c.oob)
		m.Flags = 0
		m.Addr = c.from
		c.off = next
		n++
	}
	return n
}

// next moves to the batch's next usable datagram, reporting false when there is none.
func (c *groConn) next() bool {
	for c.i+1 < c.count {
		c.i++
		m := &c.batch[c.i]
		from, ok := m.Addr.(*net.UDPAddr)
		if m.Flags&unix.MSG_TRUNC != 0 || m.N == 0 || !ok {
			continue // cannot happen with 64 KiB buffers; a datagram of 0 is no QUIC packet
		}
		c.off, c.end, c.seg = 0, m.N, m.N
		c.oob = c.oob[:0]
		if err := c.parseOOB(m.OOB[:m.NN]); err != nil {
			continue // the kernel's control messages do not parse: drop the datagram
		}
		if c.from == nil || from.Port != c.from.Port || !from.IP.Equal(c.from.IP) || from.Zone != c.from.Zone {
			c.from = from // else keep sharing the address of the sender's last datagram
		}
		return true
	}
	return false
}

// parseOOB takes the segment size from the control messages and keeps the others for
// quic-go (packet info, ECN bits), which then applies to every segment of the run.
func (c *groConn) parseOOB(oob []byte) error {
	for len(oob) > 0 {
		hdr, body, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return fmt.Errorf("control message: %w", err)
		}
		if hdr.Level == unix.IPPROTO_UDP && hdr.Type == unix.UDP_GRO {
			if len(body) >= 4 {
				if seg := int(int32(binary.NativeEndian.Uint32(body))); seg > 0 {
					c.seg = seg
				}
			}
		} else {
			c.oob = append(c.oob, oob[:len(oob)-len(rest)]...)
		}
		oob = rest
	}
	return nil
}
