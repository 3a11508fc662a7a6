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

// groBuffers are the receive buffers of every groConn in the process: a socket holds
// one only from the moment the kernel has a datagram for it until quic-go has taken
// the last segment, so thousands of idle sockets hold none.
var groBuffers = sync.Pool{New: func() any { return newGROBuffer() }}

// groBuffer is one receive: the datagram, its control messages, its sender's address
// and the recvmsg arguments pointing at them (kept here so a receive allocates nothing).
type groBuffer struct {
	data [groBufferSize]byte
	oob  [groOOBSize]byte
	name unix.RawSockaddrInet6 // large enough for an IPv4 address too
	iov  unix.Iovec
	msg  unix.Msghdr
}

func newGROBuffer() *groBuffer {
	b := new(groBuffer)
	b.iov.Base = &b.data[0]
	b.iov.SetLen(len(b.data))
	b.msg.Name = (*byte)(unsafe.Pointer(&b.name))
	b.msg.Iov = &b.iov
	b.msg.Iovlen = 1
	b.msg.Control = &b.oob[0]
	return b
}

// recvmsg receives one datagram (a coalesced run, with GRO) without waiting; it is
// unix.Recvmsg without its allocations and without the getsockopt that its address
// conversion makes on every call.
func (b *groBuffer) recvmsg(fd uintptr) (n, oobn, flags int, err error) {
	b.msg.Namelen = uint32(unsafe.Sizeof(b.name))
	b.msg.SetControllen(len(b.oob))
	b.msg.Flags = 0
	r, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&b.msg)), unix.MSG_DONTWAIT)
	if errno != 0 {
		return 0, 0, 0, errno
	}
	return int(r), int(b.msg.Controllen), int(b.msg.Flags), nil
}

// sameSender reports whether the datagram in b came from a, so the address quic-go is
// given can be shared by consecutive datagrams of one peer.
func (b *groBuffer) sameSender(a *net.UDPAddr) bool {
	if a == nil || int(b.name.Port) != int(htons(uint16(a.Port))) {
		return false
	}
	switch b.name.Family {
	case unix.AF_INET:
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.name))
		ip := a.IP.To4()
		return ip != nil && len(a.IP) == net.IPv6len && [4]byte(ip) == in4.Addr
	case unix.AF_INET6:
		return len(a.IP) == net.IPv6len && [16]byte(a.IP) == b.name.Addr && b.name.Scope_id == 0 && a.Zone == ""
	}
	return false
}

// sender returns the datagram's source address.
func (b *groBuffer) sender() *net.UDPAddr {
	switch b.name.Family {
	case unix.AF_INET:
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.name))
		return &net.UDPAddr{IP: net.IPv4(in4.Addr[0], in4.Addr[1], in4.Addr[2], in4.Addr[3]), Port: int(htons(in4.Port))}
	case unix.AF_INET6:
		ua := &net.UDPAddr{IP: append(net.IP(nil), b.name.Addr[:]...), Port: int(htons(b.name.Port))}
		if b.name.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(b.name.Scope_id)); err == nil {
				ua.Zone = ifi.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}

// htons swaps a port between network and host byte order (both ways are the same).
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// groConn is a UDP socket that receives with generic receive offload (UDP_GRO): the
// kernel hands over a run of datagrams from one sender in one piece, with the size of
// its segments, instead of one datagram per receive. ReadBatch — which quic-go calls
// in place of its own recvmmsg when the socket offers it — splits the run back into
// datagrams. On loopback, where quic-go's GSO sends arrive still coalesced, this saves
// the kernel segmenting every run and a system call per 8 datagrams.
//
// Only quic-go's read loop calls ReadBatch; it is not safe for concurrent use with
// itself. Everything else is the embedded *net.UDPConn.
type groConn struct {
	*net.UDPConn
	raw syscall.RawConn

	// The run being handed out: buf.data[off:end] is what is left of it, seg the size
	// of its segments, oob its control messages (GRO's removed), from its sender
	// (kept after the run, to be reused for the next datagram of the same sender).
	buf      *groBuffer
	off, end int
	seg      int
	oob      []byte
	from     *net.UDPAddr

	// The ReadBatch in progress, for read.
	ms     []ipv4.Message
	n      int
	rerr   error
	readFn func(fd uintptr) bool
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
	if len(ms) == 0 {
		return 0, nil
	}
	if c.buf != nil {
		return c.drain(ms, 0), nil
	}
	c.ms, c.n, c.rerr = ms, 0, nil
	err := c.raw.Read(c.readFn)
	n, rerr := c.n, c.rerr
	c.ms, c.rerr = nil, nil
	if err != nil {
		return n, err
	}
	if rerr != nil && n == 0 {
		// As x/net's batch reads report it, so quic-go tells temporary errors apart.
		return 0, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: os.NewSyscallError("recvmsg", rerr)}
	}
	return n, nil
}

// read is the raw read of ReadBatch (c.readFn): it receives datagrams into c.ms until
// it is full or the socket has no more, and asks to wait while nothing came.
func (c *groConn) read(fd uintptr) bool {
	for c.n < len(c.ms) && c.buf == nil {
		b := groBuffers.Get().(*groBuffer)
		size, oobn, flags, err := b.recvmsg(fd)
		if err != nil {
			groBuffers.Put(b)
			switch err {
			case unix.EAGAIN:
				return c.n > 0 // nothing more: done if something was read, else wait
			case unix.EINTR:
				continue
			}
			c.rerr = err
			return true
		}
		if flags&unix.MSG_TRUNC != 0 || size == 0 {
			groBuffers.Put(b) // cannot happen with a 64 KiB buffer; a datagram of 0 is no QUIC packet
			continue
		}
		if !b.sameSender(c.from) {
			c.from = b.sender()
		}
		c.buf, c.off, c.end, c.seg = b, 0, size, size
		c.oob = c.oob[:0]
		if err := c.parseOOB(b.oob[:oobn]); err != nil {
			groBuffers.Put(b)
			c.buf = nil
			c.rerr = err
			return true
		}
		c.n = c.drain(c.ms, c.n)
	}
	return true
}

// drain copies segments of the pending run into ms from index i and returns the new
// count, releasing the buffer once the run is all handed out.
func (c *groConn) drain(ms []ipv4.Message, i int) int {
	for ; i < len(ms) && c.off < c.end; i++ {
		next := min(c.off+c.seg, c.end)
		m := &ms[i]
		m.N = copy(m.Buffers[0], c.buf.data[c.off:next])
		m.NN = copy(m.OOB, c.oob)
		m.Flags = 0
		m.Addr = c.from
		c.off = next
	}
	if c.off >= c.end {
		groBuffers.Put(c.buf)
		c.buf = nil
	}
	return i
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
