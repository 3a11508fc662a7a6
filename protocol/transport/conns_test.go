package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// benchConns returns a connected pair of QUIC connections over IPv4 loopback, with the
// settings both fedq sides use and mutual TLS.
func benchConns(b testing.TB) (client, server *quic.Conn) {
	return loopbackConns(b, net.IPv4(127, 0, 0, 1))
}

// loopbackConns is benchConns on the loopback address ip (127.0.0.1 or ::1).
func loopbackConns(b testing.TB, ip net.IP) (client, server *quic.Conn) {
	caKey, sk, ck := benchKey(b), benchKey(b), benchKey(b)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER := benchCert(b, caTmpl, caTmpl, caKey, caKey)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	leaf := func(serial int64, cn, ou string, key *ecdsa.PrivateKey) tls.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}},
			DNSNames: []string{ServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		return tls.Certificate{Certificate: [][]byte{benchCert(b, tmpl, caCert, key, caKey), caDER}, PrivateKey: key}
	}
	srv := ServerTLS(leaf(2, "coordinator", "", sk), pool)
	pc, err := ListenUDP(&net.UDPAddr{IP: ip})
	if err != nil {
		b.Fatal(err)
	}
	str := &quic.Transport{Conn: pc}
	b.Cleanup(func() { _ = CloseTransport(str) })
	ln, err := str.Listen(srv, QUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	tr, err := NewClientTransport()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { CloseTransport(tr) })
	cli := ClientTLS(caCert, leaf(3, "agent-1", RoleAgent, ck))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = Dial(ctx, tr, ln.Addr().String(), cli)
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		b.Fatal("no connection accepted")
	}
	b.Cleanup(func() { client.CloseWithError(0, ""); server.CloseWithError(0, "") })
	return client, server
}

func benchKey(b testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func benchCert(b testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) []byte {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		b.Fatal(err)
	}
	return der
}
