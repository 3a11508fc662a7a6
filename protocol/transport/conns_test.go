package transport

import (
	"context"
	"crypto"
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
	ca, pool, issue := testCA(b)
	leaf := func(cn, ou string) tls.Certificate {
		key := testKey(b)
		return tls.Certificate{Certificate: [][]byte{issue(cn, ou, key), ca.Raw}, PrivateKey: key}
	}
	srv := ServerTLS(leaf("coordinator", ""), pool)
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
	cli := ClientTLS(ca, leaf("agent-1", RoleAgent))
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

// testKey returns a fresh P-256 key.
func testKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCA makes a CA and returns its certificate, a pool holding it, and a function that
// issues it a certificate for cn in unit ou (RoleAgent, RoleAdmin, or "" for the
// coordinator) to key, good for client and server authentication under ServerName.
func testCA(t testing.TB) (*x509.Certificate, *x509.CertPool, func(cn, ou string, key crypto.Signer) []byte) {
	t.Helper()
	caKey := testKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fedq test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	serial := int64(1)
	return ca, pool, func(cn, ou string, key crypto.Signer) []byte {
		serial++
		leaf := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}},
			DNSNames: []string{ServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
}
