// Package agent is the daemon that runs on a data-holding site: it enrolls once with a
// join token, then keeps one QUIC connection to the coordinator — reconnecting with
// exponential backoff and jitter when the coordinator restarts or the network drops —
// announces what data and compute it has, sends heartbeats, and (in the issues to come)
// runs the training and evaluation tasks it is offered. It trusts nothing the
// coordinator sends without checking it: the coordinator's certificate is pinned to the
// CA in the token, and every message is validated by the protocol package.
//
// The agent's directory holds its identity and state; the private key never leaves it:
//
//	agent.key   the agent's private key (ECDSA P-256), generated here, mode 0600
//	agent.crt   its certificate, issued by the coordinator's CA at enrollment
//	ca.crt      the coordinator's CA certificate (checked against the token's pin)
//	signing.pub the coordinator's model-signing key: models are verified against it
//	agent.json  the coordinator's address and the agent's ID
package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fedq/fedq/internal/keyfile"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// Files in an agent's directory.
const (
	KeyFile        = "agent.key"
	CertFile       = "agent.crt"
	CAFile         = "ca.crt"
	SigningKeyFile = "signing.pub"
	StateFile      = "agent.json"
)

// State is agent.json.
type State struct {
	// Addr is the coordinator's address, from the join token.
	Addr string `json:"addr"`
	// ID is the agent's identity, as its certificate names it.
	ID string `json:"id"`
	// EnrolledAt is when the certificate was issued.
	EnrolledAt time.Time `json:"enrolled_at"`
}

// Identity is a loaded, enrolled agent directory.
type Identity struct {
	Dir   string
	State State
	CA    *x509.Certificate
	Cert  tls.Certificate
	// SigningKey verifies model versions.
	SigningKey ed25519.PublicKey
}

// Load reads an enrolled agent's directory.
func Load(dir string) (*Identity, error) {
	id := &Identity{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s holds no enrolled agent: run `fedq agent enroll --token TOKEN --dir %s` first", dir, dir)
		}
		return nil, err
	}
	if err := json.Unmarshal(b, &id.State); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	if id.CA, err = keyfile.ReadCert(filepath.Join(dir, CAFile)); err != nil {
		return nil, err
	}
	if id.Cert, err = tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
		return nil, fmt.Errorf("load agent certificate from %s: %w", dir, err)
	}
	pub, err := keyfile.ReadPublicKey(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return nil, err
	}
	var ok bool
	if id.SigningKey, ok = pub.(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", filepath.Join(dir, SigningKeyFile))
	}
	return id, nil
}

// EnrollOptions configure Enroll.
type EnrollOptions struct {
	// Name is the name the agent asks for (the token decides; informational).
	Name string
	// Addr overrides the coordinator address in the token.
	Addr string
	// Force replaces an existing enrollment in dir.
	Force bool
}

// Enroll generates the agent's key in dir, connects to the coordinator named by the
// token — accepting it only if its chain holds the CA the token pins — presents the
// token and a certificate request, and stores the certificate it gets back.
func Enroll(ctx context.Context, dir, token string, opt EnrollOptions) (*Identity, error) {
	tok, err := protocol.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, CertFile)); err == nil && !opt.Force {
		return nil, fmt.Errorf("%s already holds an enrolled agent; use another --dir, or --force to replace it", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: opt.Name}}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	addr := tok.Addr
	if opt.Addr != "" {
		addr = opt.Addr
	}
	tr, err := transport.NewClientTransport()
	if err != nil {
		return nil, err
	}
	defer transport.CloseTransport(tr)
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout)
	defer cancel()
	conn, err := transport.Dial(dctx, tr, addr, transport.PinnedTLS(tok.CAHash))
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", addr, err)
	}
	resp, err := func() (*protocol.EnrollResponse, error) {
		defer transport.Close(conn, nil)
		st, err := conn.OpenStreamSync(dctx)
		if err != nil {
			return nil, transport.ConnError(conn, err)
		}
		_ = st.SetDeadline(time.Now().Add(2 * transport.FirstFrameTimeout))
		if err := protocol.WriteMessage(st, &protocol.EnrollRequest{Token: token, CSR: csr, AgentName: opt.Name}); err != nil {
			return nil, transport.ConnError(conn, err)
		}
		_ = st.Close()
		m, err := protocol.NewReader(st, protocol.MaxFrameSize).Read()
		if err != nil {
			return nil, transport.ConnError(conn, err)
		}
		switch m := m.(type) {
		case *protocol.EnrollResponse:
			return m, nil
		case *protocol.Error:
			return nil, m
		default:
			return nil, fmt.Errorf("unexpected reply %s", m.Type())
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", addr, err)
	}
	// Check what came back before trusting it.
	caCert, err := x509.ParseCertificate(resp.CACertificate)
	if err != nil {
		return nil, fmt.Errorf("enroll: CA certificate: %w", err)
	}
	if sha256.Sum256(caCert.Raw) != tok.CAHash {
		return nil, fmt.Errorf("enroll: %w", transport.ErrPinMismatch)
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("enroll: certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("enroll: the certificate does not verify against the CA: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("enroll: the certificate is not for this agent's key")
	}
	keyPEM, err := keyfile.KeyPEM(key)
	if err != nil {
		return nil, err
	}
	if len(resp.SigningKey) != ed25519.PublicKeySize {
		return nil, errors.New("enroll: the coordinator sent no model-signing key")
	}
	signPEM, err := keyfile.PublicKeyPEM(ed25519.PublicKey(resp.SigningKey))
	if err != nil {
		return nil, err
	}
	st := State{Addr: addr, ID: cert.Subject.CommonName, EnrolledAt: cert.NotBefore.UTC()}
	stJSON, _ := json.MarshalIndent(st, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, keyPEM, 0o600},
		{CertFile, keyfile.CertPEM(cert.Raw), 0o644},
		{CAFile, keyfile.CertPEM(caCert.Raw), 0o644},
		{SigningKeyFile, signPEM, 0o644},
		{StateFile, append(stJSON, '\n'), 0o644},
	} {
		if err := keyfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("enroll: save %s: %w", f.name, err)
		}
	}
	return Load(dir)
}
