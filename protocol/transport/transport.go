// Package transport runs fedq's protocol over QUIC (github.com/quic-go/quic-go) with
// mutual TLS 1.3: the TLS and QUIC configurations of both sides, certificate pinning for
// enrollment, roles carried in certificates, and small stream helpers with deadlines.
//
// Decisions:
//
//   - The coordinator's server certificate always names [ServerName] besides the hosts it
//     was made for, and agents verify against that name. Trust comes from the pinned,
//     private CA, not from DNS, so an agent that reaches the coordinator through NAT, a
//     proxy or a different address still verifies it.
//   - A peer's role is the organizational unit of its certificate's subject: [RoleAgent]
//     or [RoleAdmin]; its ID is the common name. The coordinator's CA issues both.
//   - The server accepts connections without a client certificate (enrollment), and
//     verifies the certificate when one is given; what an unauthenticated connection may
//     do is decided by the coordinator (only EnrollRequest).
//   - Keep-alives every 10 s and a 30 s idle timeout, so NAT bindings survive between
//     heartbeats and a dead path is noticed. Streams per connection are bounded.
//   - Sockets come from [ListenUDP]: on Linux they receive with UDP generic receive
//     offload, which quic-go does not do itself (quic-go issue 3838). quic-go sends
//     with GSO; without GRO the kernel cuts every such send back into datagrams for the
//     receiver, and on a machine running both ends (a simulation, the benchmarks) that
//     was a fifth of the CPU of moving a model.
package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/protocol"
)

// ServerName is the DNS name every coordinator certificate carries and every agent
// verifies.
const ServerName = "coordinator.fedq"

// Roles, as the organizational unit of a certificate's subject.
const (
	RoleAgent = "fedq-agent"
	RoleAdmin = "fedq-admin"
)

// Timeouts and limits of connections.
const (
	// KeepAlive is how often an idle connection sends a QUIC PING.
	KeepAlive = 10 * time.Second
	// IdleTimeout closes a connection that heard nothing for this long.
	IdleTimeout = 30 * time.Second
	// HandshakeTimeout bounds the QUIC and TLS handshake.
	HandshakeTimeout = 10 * time.Second
	// MaxStreams bounds the concurrent streams a client may open on one connection.
	MaxStreams = 16
	// FirstFrameTimeout bounds the wait for a stream's first frame.
	FirstFrameTimeout = 10 * time.Second
)

// QUICConfig returns the QUIC settings both sides use. Stream windows let one stream
// carry a 40 MB model at full speed; the connection window bounds what one peer can
// make the other buffer.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           HandshakeTimeout,
		MaxIdleTimeout:                 IdleTimeout,
		KeepAlivePeriod:                KeepAlive,
		MaxIncomingStreams:             MaxStreams,
		MaxIncomingUniStreams:          -1, // the protocol uses bidirectional streams only
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 512 << 10,
		MaxConnectionReceiveWindow:     32 << 20,
	}
}

// ServerTLS returns the coordinator's TLS configuration: cert must carry its chain up to
// (and including) the CA certificate, so that agents pinning the CA's hash find it.
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
		NextProtos:   []string{protocol.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS returns an enrolled client's TLS configuration: it trusts only the
// coordinator's CA and presents cert (an agent's or an admin's).
func ClientTLS(ca *x509.Certificate, cert tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   ServerName,
		NextProtos:   []string{protocol.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
}

// ErrPinMismatch is returned when the coordinator's chain does not contain the CA
// certificate a join token pins.
var ErrPinMismatch = errors.New("the coordinator's CA does not match the token's pinned hash: wrong address, or a token from another coordinator")

// PinnedTLS returns the TLS configuration of an agent that is not enrolled yet: no client
// certificate, and the server accepted only if its chain holds a certificate whose
// SHA-256 is caHash and which verifies the server certificate for [ServerName].
func PinnedTLS(caHash protocol.Hash) *tls.Config {
	return &tls.Config{
		// The standard verification needs roots we do not have yet; VerifyConnection
		// below does the whole check against the pinned certificate.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyPinned(cs.PeerCertificates, caHash)
			return err
		},
		ServerName: ServerName,
		NextProtos: []string{protocol.ALPN},
		MinVersion: tls.VersionTLS13,
	}
}

// VerifyPinned checks a server chain against a pinned CA hash and returns the CA
// certificate.
func VerifyPinned(chain []*x509.Certificate, caHash protocol.Hash) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("the coordinator sent no certificate")
	}
	for _, c := range chain {
		if sha256.Sum256(c.Raw) != caHash {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: ServerName}); err != nil {
			return nil, fmt.Errorf("the coordinator's certificate does not verify against the pinned CA: %w", err)
		}
		return c, nil
	}
	return nil, ErrPinMismatch
}

// Peer is the authenticated identity of the other end of a connection.
type Peer struct {
	// ID is the certificate's common name; empty when no certificate was presented.
	ID string
	// Role is RoleAgent, RoleAdmin, or empty for an unauthenticated (enrolling) peer.
	Role string
	// Cert is the peer's verified leaf certificate, or nil.
	Cert *x509.Certificate
}

// PeerOf returns the identity a connection's client presented (the TLS stack has
// verified the chain against the CA when a certificate was given).
func PeerOf(conn *quic.Conn) Peer {
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return Peer{}
	}
	c := certs[0]
	role := ""
	for _, ou := range c.Subject.OrganizationalUnit {
		if ou == RoleAgent || ou == RoleAdmin {
			role = ou
		}
	}
	return Peer{ID: c.Subject.CommonName, Role: role, Cert: c}
}

// Close closes a connection with the QUIC application error code of err (0 when err is
// nil) and its message.
func Close(conn *quic.Conn, err error) {
	if err == nil {
		_ = conn.CloseWithError(0, "")
		return
	}
	msg := err.Error()
	if len(msg) > 512 {
		msg = msg[:512]
	}
	_ = conn.CloseWithError(quic.ApplicationErrorCode(protocol.CodeOf(err).AppErrorCode()), msg)
}

// ConnError turns the error of a connection or stream operation into what happened, in
// fedq's terms: an application close by the peer becomes the protocol error with its
// code and message; others are returned as they are, with the connection's close cause
// when there is one.
func ConnError(conn *quic.Conn, err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return &protocol.Error{Code: protocol.CodeFromAppError(uint64(ae.ErrorCode)), Msg: ae.ErrorMessage}
	}
	if conn != nil {
		if cause := context.Cause(conn.Context()); cause != nil && !errors.Is(err, cause) {
			if errors.As(cause, &ae) {
				return &protocol.Error{Code: protocol.CodeFromAppError(uint64(ae.ErrorCode)), Msg: ae.ErrorMessage}
			}
			return fmt.Errorf("%w (connection: %v)", err, cause)
		}
	}
	return err
}

// ReadFirst reads the first frame of a stream within FirstFrameTimeout.
func ReadFirst(s *quic.Stream, rd *protocol.Reader) (protocol.Message, error) {
	_ = s.SetReadDeadline(time.Now().Add(FirstFrameTimeout))
	m, err := rd.Read()
	_ = s.SetReadDeadline(time.Time{})
	return m, err
}

// Reject answers a stream with an Error frame carrying err, closes the stream's sending
// side and stops reading from it.
func Reject(s *quic.Stream, err error) {
	pe, ok := errors.AsType[*protocol.Error](err)
	if !ok {
		pe = protocol.NewError(protocol.CodeOf(err), "%v", err)
	}
	_ = s.SetWriteDeadline(time.Now().Add(FirstFrameTimeout))
	_ = protocol.WriteMessage(s, pe)
	_ = s.Close()
	s.CancelRead(quic.StreamErrorCode(pe.Code.AppErrorCode()))
}

// EndRead ends the reading side of a stream whose last frame has been read. QUIC gives
// the peer back its stream credit only once a stream is complete both ways, and the
// receiving side is complete only when the FIN has been read: a handler that stops at
// its frame leaks one of the peer's MaxStreams streams each time the FIN arrives after
// the frame (it does on a loaded machine), until the peer cannot open any more. EndRead
// reads the FIN, waiting at most FirstFrameTimeout; anything else in its place — more
// bytes, an error, a FIN that does not come — cancels the reading side instead, which
// completes it as well.
func EndRead(s *quic.Stream) {
	_ = s.SetReadDeadline(time.Now().Add(FirstFrameTimeout))
	var b [1]byte
	n, err := s.Read(b[:])
	if n > 0 || !errors.Is(err, io.EOF) {
		s.CancelRead(quic.StreamErrorCode(protocol.CodeProtocol.AppErrorCode()))
	}
}

// Discard drains and ignores what is left of r: a helper for tests and for ending
// streams politely.
func Discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }

// NewClientTransport opens a UDP socket on an ephemeral port for dialing: one per
// client process (agent daemon, admin client), shared by its connections. Close it
// with CloseTransport: quic.Transport.Close leaves open a socket it was given.
func NewClientTransport() (*quic.Transport, error) {
	pc, err := ListenUDP(&net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("open UDP socket: %w", err)
	}
	return &quic.Transport{Conn: pc}, nil
}

// CloseTransport closes tr — its connections, its reading — and then its socket.
func CloseTransport(tr *quic.Transport) error {
	err := tr.Close()
	if cerr := tr.Conn.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// Dial connects to addr over tr with the given TLS configuration and the shared QUIC
// settings.
func Dial(ctx context.Context, tr *quic.Transport, addr string, tc *tls.Config) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	conn, err := tr.Dial(ctx, ua, tc, QUICConfig())
	if err != nil {
		return nil, explainDialError(err)
	}
	return conn, nil
}

// explainDialError turns the handshake failures users meet into advice.
func explainDialError(err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) {
		switch {
		case te.ErrorCode == 0x178 || strings.Contains(te.ErrorMessage, "application protocol"):
			return fmt.Errorf("%w: the server does not speak %s (not a fedq coordinator, or an incompatible version)", err, protocol.ALPN)
		}
	}
	var ie *quic.IdleTimeoutError
	if errors.As(err, &ie) {
		return fmt.Errorf("%w: no answer from the coordinator (down, wrong address, or UDP blocked)", err)
	}
	var he *quic.HandshakeTimeoutError
	if errors.As(err, &he) {
		return fmt.Errorf("%w: no answer from the coordinator (down, wrong address, or UDP blocked)", err)
	}
	return err
}

// TLS alerts (RFC 8446 §6) that a server sends about a client certificate. QUIC carries
// them as CRYPTO_ERROR 0x100 + alert.
const (
	alertBadCertificate      = 42
	alertCertificateExpired  = 45
	alertCertificateUnknown  = 46
	alertUnknownCA           = 48
	alertCertificateRequired = 116
)

// ExplainTLSFailure turns a connection's failure after the client's handshake into
// advice: with TLS 1.3 the server checks the client certificate only after the client
// considers the handshake done, so a rejected certificate shows up at the first use.
func ExplainTLSFailure(err error) error {
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.ErrorCode.IsCryptoError() {
		return err
	}
	switch uint64(te.ErrorCode) - 0x100 {
	case alertUnknownCA, alertBadCertificate, alertCertificateUnknown:
		return fmt.Errorf("the coordinator rejected this agent's certificate (%v): it was issued by another coordinator's CA; enroll again with a token from this coordinator", err)
	case alertCertificateRequired:
		return fmt.Errorf("the coordinator requires a client certificate (%v): enroll first with `fedq agent enroll`", err)
	case alertCertificateExpired:
		return fmt.Errorf("the certificate expired (%v): enroll again", err)
	}
	return err
}

// FetchModel downloads model version (whose weights must hash to hash, unless zero) on
// a new stream of conn. read gets the stream's tensors one by one (straight into its
// buffers or an accumulator); FetchModel then checks the trailer's hash, and that hash
// against the one asked for, before returning nil. A failed or mismatched download
// returns an error and what read stored must be discarded.
func FetchModel(ctx context.Context, conn *quic.Conn, version uint64, hash protocol.Hash, read func(*protocol.TensorReader) error) error {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return ConnError(conn, err)
	}
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead(quic.StreamErrorCode(protocol.CodeCancelled.AppErrorCode()))
		st.CancelWrite(quic.StreamErrorCode(protocol.CodeCancelled.AppErrorCode()))
	})
	defer stop()
	if err := protocol.WriteMessage(st, &protocol.ModelRequest{Version: version, Hash: hash}); err != nil {
		return ConnError(conn, err)
	}
	_ = st.Close()
	tr, err := protocol.NewTensorReader(st, protocol.Limits{})
	if err != nil {
		return ConnError(conn, err)
	}
	fail := func(err error) error {
		st.CancelRead(quic.StreamErrorCode(protocol.CodeOf(err).AppErrorCode()))
		return err
	}
	if d := tr.Digest(); d != protocol.DigestSHA256 {
		return fail(protocol.NewError(protocol.CodeHashMismatch, "model %d came with digest %q: a model stream must carry its SHA-256", version, d))
	}
	if err := read(tr); err != nil {
		return fail(err)
	}
	if err := tr.Finish(); err != nil {
		return fail(ConnError(conn, err))
	}
	if !hash.IsZero() && tr.Sum() != hash {
		return fail(protocol.NewError(protocol.CodeHashMismatch, "model %d hashes to %s, not %s", version, tr.Sum(), hash))
	}
	EndRead(st)
	return nil
}

// IdleWriter writes to a stream with a deadline renewed before each Write: a peer that
// stops reading for Idle fails the write, while one that is merely slow — sharing the
// link with many others — keeps going.
type IdleWriter struct {
	Stream interface {
		io.Writer
		SetWriteDeadline(time.Time) error
	}
	Idle time.Duration
}

// Write implements io.Writer.
func (w IdleWriter) Write(p []byte) (int, error) {
	_ = w.Stream.SetWriteDeadline(time.Now().Add(w.Idle))
	return w.Stream.Write(p)
}
