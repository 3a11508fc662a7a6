//go:build !linux

package transport

import "net"

// ListenUDP opens a UDP socket on addr for a quic.Transport. (On Linux it receives
// with UDP_GRO; elsewhere quic-go's own reads are used.)
func ListenUDP(addr *net.UDPAddr) (net.PacketConn, error) {
	return net.ListenUDP("udp", addr)
}
