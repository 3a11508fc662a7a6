// Package ca is the coordinator's small certificate authority: it creates the CA, the
// coordinator's server certificate and its model-signing key (`fedq ca init`), signs
// agents' certificate requests at enrollment, issues admin certificates, and makes
// one-time join tokens.
//
// Everything lives in one directory, readable by the coordinator's user only:
//
//	ca.crt, ca.key            the CA (ECDSA P-256, 10 years)
//	server.crt, server.key    the coordinator's certificate (chain: leaf, CA)
//	signing.key, signing.pub  Ed25519 key that signs model versions
//	admin.crt, admin.key      an admin certificate for commands run on this host
//	coordinator.json          the address agents and admin clients dial
//	tokens/ID.json            join tokens: the SHA-256 of their secret, never the secret
//
// Tokens are files, not rows of the coordinator's database, so `fedq token create`
// works whether or not the coordinator is running (bbolt locks its file); the
// coordinator records a token's use in its database, in the same transaction that
// registers the agent, so a token works once.
package ca

import (
	"crypto"
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedq/fedq/internal/keyfile"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// File names in a CA directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	SigningKeyFile = "signing.key"
	SigningPubFile = "signing.pub"
	AdminCertFile  = "admin.crt"
	AdminKeyFile   = "admin.key"
	ConfigFile     = "coordinator.json"
	TokenDir       = "tokens"
)

// Validity periods.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	leafValidity   = 2 * 365 * 24 * time.Hour
	clockSkewSlack = 5 * time.Minute
)

// Config is coordinator.json: what clients need to reach the coordinator.
type Config struct {
	// Addr is the UDP address agents and admin clients dial, host:port.
	Addr string `json:"addr"`
	// Hosts are the names and IPs in the server certificate besides transport.ServerName.
	Hosts []string `json:"hosts,omitempty"`
}

// Authority is a loaded CA directory.
type Authority struct {
	Dir        string
	Config     Config
	CACert     *x509.Certificate
	caKey      crypto.Signer
	ServerCert tls.Certificate
	// SigningKey signs model versions (issue: versions).
	SigningKey ed25519.PrivateKey
}

// InitOptions configure Init.
type InitOptions struct {
	// Addr is the address clients will dial (default 127.0.0.1:4433).
	Addr string
	// Hosts are extra DNS names or IPs for the server certificate (default: the host
	// of Addr, localhost, 127.0.0.1 and ::1).
	Hosts []string
	// Now is the issuing time (default time.Now); tests set it.
	Now time.Time
}

// Init creates a CA directory. It refuses to touch a directory that already holds a CA,
// so an existing coordinator's identity is never overwritten by mistake.
func Init(dir string, opt InitOptions) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("ca init: %s already holds a CA (%s); use another --dir, or remove it to start over (every agent must then enroll again)", dir, CAKeyFile)
	}
	if opt.Addr == "" {
		opt.Addr = "127.0.0.1:4433"
	}
	host, _, err := net.SplitHostPort(opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("ca init: address %q: %w (want host:port)", opt.Addr, err)
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	hosts := append([]string{}, opt.Hosts...)
	for _, h := range []string{host, "localhost", "127.0.0.1", "::1"} {
		if h != "" && !contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, TokenDir), 0o700); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	a := &Authority{Dir: dir, Config: Config{Addr: opt.Addr, Hosts: hosts}}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca init: generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "fedq coordinator CA", Organization: []string{"fedq"}},
		NotBefore:             opt.Now.Add(-clockSkewSlack),
		NotAfter:              opt.Now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("ca init: create CA certificate: %w", err)
	}
	if a.CACert, err = x509.ParseCertificate(caDER); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	a.caKey = caKey

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca init: generate server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: transport.ServerName, Organization: []string{"fedq"}},
		NotBefore:    opt.Now.Add(-clockSkewSlack),
		NotAfter:     opt.Now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{transport.ServerName},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, a.CACert, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("ca init: create server certificate: %w", err)
	}
	_, signKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca init: generate signing key: %w", err)
	}
	a.SigningKey = signKey

	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CACertFile, keyfile.CertPEM(caDER), 0o644},
		{CAKeyFile, mustPEMKey(caKey), 0o600},
		{ServerCertFile, append(keyfile.CertPEM(srvDER), keyfile.CertPEM(caDER)...), 0o644},
		{ServerKeyFile, mustPEMKey(srvKey), 0o600},
		{SigningKeyFile, mustPEMKey(signKey), 0o600},
		{SigningPubFile, mustPEMPub(signKey.Public()), 0o644},
	}
	for _, f := range files {
		if err := keyfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("ca init: %w", err)
		}
	}
	if err := writeJSON(filepath.Join(dir, ConfigFile), a.Config); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	if a.ServerCert, err = tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	if err := a.WriteAdminCert(dir, "local-admin", opt.Now); err != nil {
		return nil, err
	}
	return a, nil
}

// Load reads a CA directory made by Init.
func Load(dir string) (*Authority, error) {
	a := &Authority{Dir: dir}
	if err := readJSON(filepath.Join(dir, ConfigFile), &a.Config); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a coordinator directory (no %s): run `fedq ca init --dir %s` first", dir, ConfigFile, dir)
		}
		return nil, err
	}
	var err error
	if a.CACert, err = keyfile.ReadCert(filepath.Join(dir, CACertFile)); err != nil {
		return nil, err
	}
	key, err := keyfile.ReadKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", filepath.Join(dir, CAKeyFile))
	}
	a.caKey = signer
	if a.ServerCert, err = tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)); err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(dir, ServerCertFile), err)
	}
	sk, err := keyfile.ReadKey(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return nil, err
	}
	if a.SigningKey, ok = sk.(ed25519.PrivateKey); !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", filepath.Join(dir, SigningKeyFile))
	}
	return a, nil
}

// CAHash is the SHA-256 of the CA certificate, which join tokens pin.
func (a *Authority) CAHash() protocol.Hash { return sha256.Sum256(a.CACert.Raw) }

// CAPool returns a pool holding only the CA certificate.
func (a *Authority) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.CACert)
	return p
}

// SignCSR issues a certificate for the public key of a PKCS#10 request (DER), for the
// given ID and role (transport.RoleAgent or RoleAdmin). The request's own subject is
// ignored: the coordinator decides who the key belongs to.
func (a *Authority) SignCSR(csrDER []byte, id, role string, now time.Time) (*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("certificate request: ECDSA curve %s not accepted (use P-256)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("certificate request: %T keys are not accepted (use ECDSA P-256 or Ed25519)", csr.PublicKey)
	}
	return a.issue(csr.PublicKey, id, role, now)
}

func (a *Authority) issue(pub crypto.PublicKey, id, role string, now time.Time) (*x509.Certificate, error) {
	if id == "" || len(id) > protocol.MaxIDLen || strings.ContainsAny(id, "/\\\x00") {
		return nil, fmt.Errorf("invalid identity %q", id)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{role}, Organization: []string{"fedq"}},
		NotBefore:    now.Add(-clockSkewSlack),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CACert, pub, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", id, err)
	}
	return x509.ParseCertificate(der)
}

// WriteAdminCert issues an admin certificate and writes everything an admin client needs
// into dir: admin.crt, admin.key, ca.crt and coordinator.json. Giving the coordinator's
// own directory writes the local admin certificate.
func (a *Authority) WriteAdminCert(dir, name string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	cert, err := a.issue(&key.PublicKey, name, transport.RoleAdmin, now)
	if err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	if err := keyfile.Write(filepath.Join(dir, AdminKeyFile), mustPEMKey(key), 0o600); err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	if err := keyfile.Write(filepath.Join(dir, AdminCertFile), keyfile.CertPEM(cert.Raw), 0o644); err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	if !sameDir(dir, a.Dir) {
		if err := keyfile.Write(filepath.Join(dir, CACertFile), keyfile.CertPEM(a.CACert.Raw), 0o644); err != nil {
			return fmt.Errorf("admin cert: %w", err)
		}
		if err := keyfile.Write(filepath.Join(dir, SigningPubFile), mustPEMPub(a.SigningKey.Public()), 0o644); err != nil {
			return fmt.Errorf("admin cert: %w", err)
		}
		if err := writeJSON(filepath.Join(dir, ConfigFile), Config{Addr: a.Config.Addr}); err != nil {
			return fmt.Errorf("admin cert: %w", err)
		}
	}
	return nil
}

// sameDir reports whether two paths name the same directory (however written).
func sameDir(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(fa, fb)
}

// ClientDir is what an admin client (or, with other file names, an agent) loads: the CA,
// its own certificate and the address to dial.
type ClientDir struct {
	Addr string
	CA   *x509.Certificate
	Cert tls.Certificate
	// SigningKey verifies model versions (nil if the directory has no signing.pub).
	SigningKey ed25519.PublicKey
}

// LoadAdmin reads an admin directory written by WriteAdminCert (or a coordinator's own).
func LoadAdmin(dir string) (*ClientDir, error) {
	var cfg Config
	if err := readJSON(filepath.Join(dir, ConfigFile), &cfg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s holds no admin credentials (no %s): give the coordinator's --dir, or one made by `fedq admin cert`", dir, ConfigFile)
		}
		return nil, err
	}
	ca, err := keyfile.ReadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, AdminCertFile), filepath.Join(dir, AdminKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load admin certificate from %s: %w", dir, err)
	}
	cd := &ClientDir{Addr: cfg.Addr, CA: ca, Cert: cert}
	if pub, err := keyfile.ReadPublicKey(filepath.Join(dir, SigningPubFile)); err == nil {
		cd.SigningKey, _ = pub.(ed25519.PublicKey)
	}
	return cd, nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func mustPEMKey(key crypto.PrivateKey) []byte {
	b, err := keyfile.KeyPEM(key)
	if err != nil {
		panic(err) // keys generated here always marshal
	}
	return b
}

func mustPEMPub(pub crypto.PublicKey) []byte {
	b, err := keyfile.PublicKeyPEM(pub)
	if err != nil {
		panic(err)
	}
	return b
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return keyfile.Write(path, append(b, '\n'), 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
