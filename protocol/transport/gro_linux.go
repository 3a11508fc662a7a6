//go:build linux

package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

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

// groBatches holds the receive batches of sockets that stopped reading, for the next
// socket: short-lived sockets (an enrollment, an admin command) reuse them instead of
// zeroing half a megabyte each.
var groBatches = sync.Pool{New: func() any { return newGROBatch() }}

// groBatch is one receive of up to groBatchSize datagrams: their bytes, control
// messages and senders' addresses, and the recvmmsg arguments pointing at them (kept
// here so that a receive allocates nothing). A socket takes its batch (≈ 0.5 MiB) at
// its first receive and keeps it until its reads stop (closed, or a deadline) —
// taking one per receive from groBatches cost a fresh 0.5 MiB after every GC.
type groBatch struct {
	data [groBatchSize][groBufferSize]byte
	oob  [groBatchSize][groOOBSize]byte
	name [groBatchSize]unix.RawSockaddrInet6 // large enough for an IPv4 address too
	iov  [groBatchSize]unix.Iovec
	hdr  [groBatchSize]mmsghdr
}

// mmsghdr is Linux's struct mmsghdr, which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func newGROBatch() *groBatch {
	b := new(groBatch)
	for i := range b.hdr {
		b.iov[i].Base = &b.data[i][0]
		b.iov[i].SetLen(groBufferSize)
		h := &b.hdr[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.name[i]))
		h.Iov = &b.iov[i]
		h.Iovlen = 1
		h.Control = &b.oob[i][0]
	}
	return b
}

// recvmmsg receives what the socket has, up to groBatchSize datagrams, without
// waiting; it returns how many came.
func (b *groBatch) recvmmsg(fd uintptr) (int, error) {
	for i := range b.hdr {
		h := &b.hdr[i].hdr
		h.Namelen = uint32(unsafe.Sizeof(b.name[i]))
		h.SetControllen(groOOBSize)
		h.Flags = 0
		b.hdr[i].n = 0
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdr[0])), groBatchSize, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// sameSender reports whether datagram i came from a, so the address quic-go is given
// can be shared by consecutive datagrams of one peer.
func (b *groBatch) sameSender(i int, a *net.UDPAddr) bool {
	name := &b.name[i]
	if a == nil || len(a.IP) != net.IPv6len || a.Port != int(ntohs(name.Port)) {
		return false
	}
	switch name.Family {
	case unix.AF_INET:
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		ip := a.IP.To4()
		return ip != nil && [4]byte(ip) == in4.Addr
	case unix.AF_INET6:
		return [16]byte(a.IP) == name.Addr && name.Scope_id == 0 && a.Zone == ""
	}
	return false
}

// sender returns datagram i's source address.
func (b *groBatch) sender(i int) *net.UDPAddr {
	name := &b.name[i]
	switch name.Family {
	case unix.AF_INET:
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		return &net.UDPAddr{IP: net.IPv4(in4.Addr[0], in4.Addr[1], in4.Addr[2], in4.Addr[3]), Port: int(ntohs(in4.Port))}
	case unix.AF_INET6:
		ua := &net.UDPAddr{IP: append(net.IP(nil), name.Addr[:]...), Port: int(ntohs(name.Port))}
		if name.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(name.Scope_id)); err == nil {
				ua.Zone = ifi.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}

// ntohs converts a port from network to host byte order.
func ntohs(v uint16) uint16 { return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&v))[:]) }

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
	raw syscall.RawConn

	// The received batch being handed out: count datagrams, the current one i, of
	// which data[off:end] is left, in segments of seg, with the control messages oob
	// (GRO's removed) and the sender from (kept after the batch, to be shared with the
	// next datagram of the same sender).
	batch         *groBatch // taken by the first read, given back when the socket is closed
	count, i      int
	off, end, seg int
	oob           []byte
	from          *net.UDPAddr

	readFn func(fd uintptr) bool // c.read, made once
	rerr   error                 // read's error
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
	c := &groConn{UDPConn: uc, raw: raw}
	c.readFn = c.read
	return c, nil
}

// ReadBatch fills ms with received datagrams, at least one, blocking until there is
// one; quic-go's batch reader interface (the flags are not used).
func (c *groConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	for {
		if n := c.drain(ms); n > 0 || len(ms) == 0 {
			return n, nil
		}
		if err := c.raw.Read(c.readFn); err != nil {
			// Closed, or a deadline (quic.Transport.Close sets one to stop reading a
			// socket it did not open): the batch is drained, and only this goroutine
			// uses it, so it goes back for another socket; a later read takes one again.
			if c.batch != nil {
				groBatches.Put(c.batch)
				c.batch, c.count, c.i, c.off, c.end = nil, 0, 0, 0, 0
			}
			return 0, err
		}
		if err := c.rerr; err != nil {
			c.rerr = nil
			// As x/net's batch reads report it, so that quic-go tells temporary errors apart.
			return 0, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: os.NewSyscallError("recvmmsg", err)}
		}
	}
}

// read is the raw read of ReadBatch (c.readFn): it receives a batch, or asks to wait
// while the socket has nothing.
func (c *groConn) read(fd uintptr) bool {
	if c.batch == nil {
		c.batch = groBatches.Get().(*groBatch)
	}
	for {
		n, err := c.batch.recvmmsg(fd)
		switch err {
		case nil:
			c.count, c.i, c.off, c.end = n, -1, 0, 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the socket is readable
		default:
			c.rerr = err
			return true
		}
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
		m.N = copy(m.Buffers[0], c.batch.data[c.i][c.off:next])
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
	b := c.batch
	for c.i+1 < c.count {
		c.i++
		h := &b.hdr[c.i]
		if h.hdr.Flags&unix.MSG_TRUNC != 0 || h.n == 0 {
			continue // cannot happen with 64 KiB buffers; a datagram of 0 is no QUIC packet
		}
		c.off, c.end, c.seg = 0, int(h.n), int(h.n)
		c.oob = c.oob[:0]
		if err := c.parseOOB(b.oob[c.i][:h.hdr.Controllen]); err != nil {
			continue // the kernel's control messages do not parse: drop the datagram
		}
		if !b.sameSender(c.i, c.from) {
			c.from = b.sender(c.i)
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
