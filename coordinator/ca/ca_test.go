package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// testNow is the fixed clock of these tests (whole seconds: certificates keep no more).
var testNow = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

func initCA(t *testing.T, opt ca.InitOptions) (*ca.Authority, string) {
	t.Helper()
	dir := t.TempDir()
	if opt.Now.IsZero() {
		opt.Now = testNow
	}
	a, err := ca.Init(dir, opt)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return a, dir
}

func readPEMCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("%s: PEM block %q, want CERTIFICATE", path, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		t.Fatalf("%s: trailing non-PEM data", path)
	}
	return out
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

func TestInitFilesAndPermissions(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{Addr: "127.0.0.1:4433"})
	if a.Dir != dir {
		t.Errorf("Dir = %q, want %q", a.Dir, dir)
	}
	files := []struct {
		name string
		mode os.FileMode
	}{
		{ca.CACertFile, 0o644},
		{ca.CAKeyFile, 0o600},
		{ca.ServerCertFile, 0o644},
		{ca.ServerKeyFile, 0o600},
		{ca.SigningKeyFile, 0o600},
		{ca.SigningPubFile, 0o644},
		{ca.AdminCertFile, 0o644},
		{ca.AdminKeyFile, 0o600},
		{ca.ConfigFile, 0o644},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(dir, f.name))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() {
				t.Fatalf("mode %v, want a regular file", fi.Mode())
			}
			if got := fi.Mode().Perm(); got != f.mode {
				t.Errorf("permissions %#o, want %#o", got, f.mode)
			}
			if fi.Size() == 0 {
				t.Error("file is empty")
			}
		})
	}
	fi, err := os.Stat(filepath.Join(dir, ca.TokenDir))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want a directory with 0700", ca.TokenDir, fi.Mode())
	}
	// No temporary files of the atomic writes are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary file %s", e.Name())
		}
	}

	// coordinator.json holds the address and hosts.
	var cfg ca.Config
	b, err := os.ReadFile(filepath.Join(dir, ca.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, a.Config) {
		t.Errorf("coordinator.json = %+v, want %+v", cfg, a.Config)
	}
	if cfg.Addr != "127.0.0.1:4433" {
		t.Errorf("Addr = %q", cfg.Addr)
	}

	// ca.crt is a CA certificate, as returned.
	caCerts := readPEMCerts(t, filepath.Join(dir, ca.CACertFile))
	if len(caCerts) != 1 || !caCerts[0].Equal(a.CACert) {
		t.Fatalf("ca.crt holds %d certificates, want the authority's CA", len(caCerts))
	}
	if !a.CACert.IsCA || !a.CACert.BasicConstraintsValid {
		t.Error("CA certificate is not a CA")
	}
	if _, ok := a.CACert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", a.CACert.PublicKey)
	}
	if want := testNow.Add(-5 * time.Minute); !a.CACert.NotBefore.Equal(want) {
		t.Errorf("CA NotBefore = %v, want %v", a.CACert.NotBefore, want)
	}
	if a.CACert.NotAfter.Before(testNow.Add(9 * 365 * 24 * time.Hour)) {
		t.Errorf("CA NotAfter = %v, want about 10 years after %v", a.CACert.NotAfter, testNow)
	}
	if a.CAHash() != protocol.Hash(sha256.Sum256(a.CACert.Raw)) {
		t.Error("CAHash is not the SHA-256 of the CA certificate")
	}

	// signing.pub is the public half of the signing key.
	pb, err := os.ReadFile(filepath.Join(dir, ca.SigningPubFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pb)
	if blk == nil {
		t.Fatal("signing.pub is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !a.SigningKey.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("signing.pub does not match SigningKey")
	}
}

func TestInitServerCertificate(t *testing.T) {
	tests := []struct {
		name    string
		opt     ca.InitOptions
		valid   []string // names the server certificate must verify for
		invalid []string
	}{
		{
			name:    "defaults",
			opt:     ca.InitOptions{},
			valid:   []string{transport.ServerName, "127.0.0.1", "localhost", "::1"},
			invalid: []string{"example.com", "10.0.0.1", "fedq"},
		},
		{
			name:    "loopback",
			opt:     ca.InitOptions{Addr: "127.0.0.1:4433"},
			valid:   []string{transport.ServerName, "127.0.0.1", "localhost", "::1"},
			invalid: []string{"example.com", "127.0.0.2"},
		},
		{
			name: "extra hosts",
			opt: ca.InitOptions{
				Addr:  "192.0.2.7:5000",
				Hosts: []string{"fedq.example.org", "10.1.2.3", "localhost"},
			},
			valid:   []string{transport.ServerName, "192.0.2.7", "fedq.example.org", "10.1.2.3", "127.0.0.1", "localhost", "::1"},
			invalid: []string{"example.org", "10.1.2.4", "evil.example.org"},
		},
		{
			name:    "DNS host in address",
			opt:     ca.InitOptions{Addr: "coord.internal:4433"},
			valid:   []string{transport.ServerName, "coord.internal", "127.0.0.1", "localhost"},
			invalid: []string{"internal"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, dir := initCA(t, tt.opt)
			chain := readPEMCerts(t, filepath.Join(dir, ca.ServerCertFile))
			if len(chain) != 2 {
				t.Fatalf("server.crt holds %d certificates, want leaf and CA", len(chain))
			}
			leaf := chain[0]
			if !chain[1].Equal(a.CACert) {
				t.Error("second certificate of server.crt is not ca.crt")
			}
			if !bytes.Equal(a.ServerCert.Certificate[0], leaf.Raw) {
				t.Error("Authority.ServerCert is not server.crt's leaf")
			}
			if leaf.Subject.CommonName != transport.ServerName {
				t.Errorf("server CN = %q, want %q", leaf.Subject.CommonName, transport.ServerName)
			}
			// No duplicates among the names.
			if d := slices.Compact(slices.Sorted(slices.Values(leaf.DNSNames))); len(d) != len(leaf.DNSNames) {
				t.Errorf("duplicate DNS names: %q", leaf.DNSNames)
			}
			caCerts := readPEMCerts(t, filepath.Join(dir, ca.CACertFile))
			for _, name := range tt.valid {
				_, err := leaf.Verify(x509.VerifyOptions{
					DNSName:     name,
					Roots:       poolOf(caCerts[0]),
					CurrentTime: testNow,
					KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
				if err != nil {
					t.Errorf("verify for %q: %v", name, err)
				}
			}
			for _, name := range tt.invalid {
				_, err := leaf.Verify(x509.VerifyOptions{
					DNSName:     name,
					Roots:       poolOf(caCerts[0]),
					CurrentTime: testNow,
					KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
				if err == nil {
					t.Errorf("server certificate verifies for %q, which it should not name", name)
				}
			}
			// A server certificate is no client certificate.
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:       poolOf(caCerts[0]),
				CurrentTime: testNow,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}); err == nil {
				t.Error("server certificate verifies for client auth")
			}
			// It does not verify against another CA.
			other, _ := initCA(t, ca.InitOptions{})
			if _, err := leaf.Verify(x509.VerifyOptions{
				DNSName:     transport.ServerName,
				Roots:       other.CAPool(),
				CurrentTime: testNow,
			}); err == nil {
				t.Error("server certificate verifies against another CA")
			}
		})
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	_, dir := initCA(t, ca.InitOptions{})
	before, err := os.ReadFile(filepath.Join(dir, ca.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ca.Init(dir, ca.InitOptions{Now: testNow})
	if err == nil {
		t.Fatal("second Init in the same directory succeeded")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory %s", err, dir)
	}
	after, err := os.ReadFile(filepath.Join(dir, ca.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("refused Init changed ca.crt")
	}
}

func TestInitBadAddr(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "localhost", "coordinator.fedq", "[::1]", "::1"} {
		t.Run(addr, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			a, err := ca.Init(dir, ca.InitOptions{Addr: addr, Now: testNow})
			if err == nil {
				t.Fatalf("Init accepted address %q without a port", addr)
			}
			if a != nil {
				t.Error("Init returned an authority with its error")
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("error %q does not quote the address", err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("refused Init created %s (stat: %v)", dir, err)
			}
		})
	}
}

func TestLoadRoundTrip(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{Addr: "192.0.2.1:7000", Hosts: []string{"fedq.example.org"}})
	b, err := ca.Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if b.Dir != dir {
		t.Errorf("Dir = %q, want %q", b.Dir, dir)
	}
	if b.CAHash() != a.CAHash() {
		t.Error("loaded CA hash differs")
	}
	if !b.CACert.Equal(a.CACert) {
		t.Error("loaded CA certificate differs")
	}
	if !b.SigningKey.Equal(a.SigningKey) {
		t.Error("loaded signing key differs")
	}
	if !reflect.DeepEqual(b.Config, a.Config) {
		t.Errorf("loaded config %+v, want %+v", b.Config, a.Config)
	}
	if len(b.ServerCert.Certificate) != 2 || !bytes.Equal(b.ServerCert.Certificate[0], a.ServerCert.Certificate[0]) {
		t.Error("loaded server certificate differs")
	}
	// The loaded CA key is the CA's: what it signs verifies against the original CA.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := b.SignCSR(makeCSR(t, key), "agent-1", transport.RoleAgent, testNow)
	if err != nil {
		t.Fatalf("SignCSR with loaded CA: %v", err)
	}
	verifyClient(t, cert, a.CAPool())
}

func TestLoadNotACADir(t *testing.T) {
	for name, dir := range map[string]string{
		"empty":   t.TempDir(),
		"missing": filepath.Join(t.TempDir(), "nope"),
	} {
		t.Run(name, func(t *testing.T) {
			a, err := ca.Load(dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if a != nil {
				t.Error("Load returned an authority with its error")
			}
			if !strings.Contains(err.Error(), "fedq ca init") || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q should name %s and tell to run `fedq ca init`", err, dir)
			}
		})
	}
}

func makeCSR(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "chosen-by-requester", OrganizationalUnit: []string{transport.RoleAdmin}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func verifyClient(t *testing.T, cert *x509.Certificate, roots *x509.CertPool) {
	t.Helper()
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("certificate does not verify as a client certificate: %v", err)
	}
}

func TestSignCSRAccepts(t *testing.T) {
	a, _ := initCA(t, ca.InitOptions{})
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
		id   string
		role string
	}{
		{"ECDSA P-256 agent", p256, "agent-1", transport.RoleAgent},
		{"ECDSA P-384 agent", p384, "agent-2", transport.RoleAgent},
		{"Ed25519 agent", edKey, "agent_3.x", transport.RoleAgent},
		{"ECDSA P-256 admin", p256, "alice", transport.RoleAdmin},
		{"longest id", edKey, strings.Repeat("x", protocol.MaxIDLen), transport.RoleAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := a.SignCSR(makeCSR(t, tt.key), tt.id, tt.role, testNow)
			if err != nil {
				t.Fatalf("SignCSR: %v", err)
			}
			if cert.Subject.CommonName != tt.id {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tt.id)
			}
			if !slices.Equal(cert.Subject.OrganizationalUnit, []string{tt.role}) {
				t.Errorf("OU = %q, want [%q]", cert.Subject.OrganizationalUnit, tt.role)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", cert.ExtKeyUsage)
			}
			if cert.IsCA {
				t.Error("issued certificate is a CA")
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if !tt.key.Public().(equaler).Equal(cert.PublicKey) {
				t.Error("certificate is not for the request's key")
			}
			if want := testNow.Add(-5 * time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", cert.NotBefore, want)
			}
			if !cert.NotAfter.After(testNow.Add(365 * 24 * time.Hour)) {
				t.Errorf("NotAfter = %v: too short", cert.NotAfter)
			}
			verifyClient(t, cert, a.CAPool())
			if _, err := cert.Verify(x509.VerifyOptions{
				Roots:       a.CAPool(),
				CurrentTime: testNow,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err == nil {
				t.Error("client certificate verifies for server auth")
			}
		})
	}
}

func TestSignCSRSerialsDiffer(t *testing.T) {
	a, _ := initCA(t, ca.InitOptions{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := makeCSR(t, key)
	c1, err := a.SignCSR(csr, "agent-1", transport.RoleAgent, testNow)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := a.SignCSR(csr, "agent-1", transport.RoleAgent, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if c1.SerialNumber.Cmp(c2.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}

func TestSignCSRRejects(t *testing.T) {
	a, _ := initCA(t, ca.InitOptions{})
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	good := makeCSR(t, p256)
	flipSig := func(csr []byte) []byte {
		// The signature is the last field of the DER request; its last byte is the
		// signature's.
		b := slices.Clone(csr)
		b[len(b)-1] ^= 0x01
		if _, err := x509.ParseCertificateRequest(b); err != nil {
			t.Fatalf("flipped request no longer parses: %v", err)
		}
		return b
	}

	tests := []struct {
		name string
		csr  []byte
		id   string
	}{
		{"RSA key", makeCSR(t, rsaKey), "agent-1"},
		{"ECDSA P-521 key", makeCSR(t, p521), "agent-1"},
		{"bad ECDSA signature", flipSig(good), "agent-1"},
		{"bad Ed25519 signature", flipSig(makeCSR(t, edKey)), "agent-1"},
		{"garbage", []byte("this is not a certificate request"), "agent-1"},
		{"empty", nil, "agent-1"},
		{"truncated", good[:len(good)/2], "agent-1"},
		{"a certificate, not a request", a.CACert.Raw, "agent-1"},
		{"empty id", good, ""},
		{"slash in id", good, "a/b"},
		{"backslash in id", good, `a\b`},
		{"NUL in id", good, "a\x00b"},
		{"300-byte id", good, strings.Repeat("a", 300)},
		{"id one byte too long", good, strings.Repeat("a", protocol.MaxIDLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := a.SignCSR(tt.csr, tt.id, transport.RoleAgent, testNow)
			if err == nil {
				t.Fatalf("SignCSR accepted it: issued %q", cert.Subject.CommonName)
			}
			if cert != nil {
				t.Error("certificate returned with an error")
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"agent-1", true},
		{"lab_3.gpu-07", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"-a", false},
		{".a", false},
		{"_a", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a\n", false},
		{"agént", false},
		{"a:b", false},
	}
	for _, tt := range tests {
		err := ca.ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func tokenFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ca.TokenDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCreateTokenRejects(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{})
	tests := []struct {
		name   string
		ttl    time.Duration
		reason string
	}{
		{"", time.Hour, "empty name"},
		{"a/b", time.Hour, "slash"},
		{"../evil", time.Hour, "path"},
		{"-x", time.Hour, "leading dash"},
		{strings.Repeat("n", 65), time.Hour, "too long"},
		{"agent-1", 0, "zero ttl"},
		{"agent-1", -time.Second, "negative ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			text, rec, err := a.CreateToken(tt.name, tt.ttl, "", testNow)
			if err == nil {
				t.Fatalf("CreateToken(%q, %v) succeeded", tt.name, tt.ttl)
			}
			if text != "" || rec != nil {
				t.Error("CreateToken returned a token with its error")
			}
		})
	}
	if files := tokenFiles(t, dir); len(files) != 0 {
		t.Errorf("refused tokens left files: %q", files)
	}
}

func TestCreateToken(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{Addr: "192.0.2.10:4433"})
	tests := []struct {
		name     string
		addr     string
		wantAddr string
	}{
		{"default address", "", "192.0.2.10:4433"},
		{"override", "fedq.example.org:9000", "fedq.example.org:9000"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ttl := 24 * time.Hour
			text, rec, err := a.CreateToken("agent-7", ttl, tt.addr, testNow)
			if err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
			if !strings.HasPrefix(text, protocol.TokenPrefix) {
				t.Errorf("token %q lacks prefix %q", text, protocol.TokenPrefix)
			}
			tok, err := protocol.ParseJoinToken(text)
			if err != nil {
				t.Fatalf("ParseJoinToken: %v", err)
			}
			if tok.CAHash != a.CAHash() {
				t.Error("token does not pin the CA")
			}
			if tok.Addr != tt.wantAddr {
				t.Errorf("token address %q, want %q", tok.Addr, tt.wantAddr)
			}
			if tok.ID != rec.ID {
				t.Errorf("token ID %q, record ID %q", tok.ID, rec.ID)
			}
			if seen[rec.ID] {
				t.Errorf("token ID %s issued twice", rec.ID)
			}
			seen[rec.ID] = true
			if rec.Name != "agent-7" || !rec.Created.Equal(testNow) || !rec.Expires.Equal(testNow.Add(ttl)) {
				t.Errorf("record %+v: wrong name or times", rec)
			}
			sum := sha256.Sum256(tok.Secret)
			if rec.Secret != hex.EncodeToString(sum[:]) {
				t.Error("record does not hold the SHA-256 of the secret")
			}

			path := filepath.Join(dir, ca.TokenDir, rec.ID+".json")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("token file: %v", err)
			}
			var stored ca.TokenRecord
			if err := json.Unmarshal(data, &stored); err != nil {
				t.Fatal(err)
			}
			if stored.ID != rec.ID || stored.Name != rec.Name || stored.Secret != rec.Secret ||
				!stored.Created.Equal(rec.Created) || !stored.Expires.Equal(rec.Expires) {
				t.Errorf("stored record %+v, want %+v", stored, *rec)
			}
			for enc, s := range map[string]string{
				"hex":           hex.EncodeToString(tok.Secret),
				"HEX":           strings.ToUpper(hex.EncodeToString(tok.Secret)),
				"base64":        base64.StdEncoding.EncodeToString(tok.Secret),
				"base64 raw":    base64.RawStdEncoding.EncodeToString(tok.Secret),
				"base64url":     base64.URLEncoding.EncodeToString(tok.Secret),
				"base64url raw": base64.RawURLEncoding.EncodeToString(tok.Secret),
			} {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("token file holds the secret in %s", enc)
				}
			}
			if bytes.Contains(data, tok.Secret) {
				t.Error("token file holds the raw secret")
			}
			if bytes.Contains(data, []byte(text)) {
				t.Error("token file holds the token text")
			}
		})
	}
	if n := len(tokenFiles(t, dir)); n != len(tests) {
		t.Errorf("%d token files, want %d", n, len(tests))
	}
}

func TestCheckToken(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{})
	ttl := time.Hour
	text, rec, err := a.CreateToken("agent-1", ttl, "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	parse := func() *protocol.JoinToken {
		tok, err := protocol.ParseJoinToken(text)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// A valid record planted where "../x" would lead: CheckToken must not read it.
	outside := filepath.Join(dir, "x.json")
	planted := *rec
	planted.ID = "x"
	b, _ := json.Marshal(planted)
	if err := os.WriteFile(outside, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// A token of another CA, whose record was copied into this CA's directory.
	other, otherDir := initCA(t, ca.InitOptions{})
	otherText, otherRec, err := other.CreateToken("agent-1", ttl, "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := os.ReadFile(filepath.Join(otherDir, ca.TokenDir, otherRec.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ca.TokenDir, otherRec.ID+".json"), ob, 0o600); err != nil {
		t.Fatal(err)
	}
	otherTok, err := protocol.ParseJoinToken(otherText)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		mutate func(*protocol.JoinToken) *protocol.JoinToken
		now    time.Time
		want   protocol.ErrorCode // CodeNone: valid
	}{
		{"valid", nil, testNow, protocol.CodeNone},
		{"valid just before expiry", nil, testNow.Add(ttl - time.Nanosecond), protocol.CodeNone},
		{"valid with other address", func(tk *protocol.JoinToken) *protocol.JoinToken {
			tk.Addr = "elsewhere:1"
			return tk
		}, testNow, protocol.CodeNone},
		{"expired at Expires", nil, testNow.Add(ttl), protocol.CodeTokenExpired},
		{"expired later", nil, testNow.Add(ttl + 24*time.Hour), protocol.CodeTokenExpired},
		{"unknown ID", func(tk *protocol.JoinToken) *protocol.JoinToken {
			tk.ID = "0123456789abcdef"
			if tk.ID == rec.ID {
				tk.ID = "fedcba9876543210"
			}
			return tk
		}, testNow, protocol.CodeTokenInvalid},
		{"path traversal ID", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.ID = "../x"; return tk }, testNow, protocol.CodeTokenInvalid},
		{"empty ID", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.ID = ""; return tk }, testNow, protocol.CodeTokenInvalid},
		{"upper-case ID", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.ID = strings.ToUpper(tk.ID); return tk }, testNow, protocol.CodeTokenInvalid},
		{"ID with suffix", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.ID += "0"; return tk }, testNow, protocol.CodeTokenInvalid},
		{"ID with .json", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.ID += ".json"; return tk }, testNow, protocol.CodeTokenInvalid},
		{"wrong secret", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.Secret[0] ^= 0x80; return tk }, testNow, protocol.CodeTokenInvalid},
		{"empty secret", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.Secret = nil; return tk }, testNow, protocol.CodeTokenInvalid},
		{"wrong secret, expired", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.Secret[31] ^= 1; return tk }, testNow.Add(2 * ttl), protocol.CodeTokenInvalid},
		{"pins another CA hash", func(tk *protocol.JoinToken) *protocol.JoinToken { tk.CAHash[0] ^= 1; return tk }, testNow, protocol.CodeTokenInvalid},
		{"token of another CA", func(*protocol.JoinToken) *protocol.JoinToken { return otherTok }, testNow, protocol.CodeTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := parse()
			if tt.mutate != nil {
				tok = tt.mutate(tok)
			}
			got, err := a.CheckToken(tok, tt.now)
			if code := protocol.CodeOf(err); code != tt.want {
				t.Fatalf("CheckToken: %v (code %v), want code %v", err, code, tt.want)
			}
			if tt.want != protocol.CodeNone {
				if got != nil {
					t.Error("record returned with an error")
				}
				return
			}
			if got.ID != rec.ID || got.Name != "agent-1" || got.Secret != rec.Secret || !got.Expires.Equal(rec.Expires) {
				t.Errorf("record %+v, want %+v", got, rec)
			}
		})
	}
}

func TestCheckTokenAfterLoad(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{})
	text, rec, err := a.CreateToken("agent-1", time.Hour, "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := protocol.ParseJoinToken(text)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.CheckToken(tok, testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("CheckToken on the loaded CA: %v", err)
	}
	if got.ID != rec.ID {
		t.Errorf("record %s, want %s", got.ID, rec.ID)
	}
}

func TestWriteAdminCertAndLoadAdmin(t *testing.T) {
	a, dir := initCA(t, ca.InitOptions{Addr: "192.0.2.5:4433", Hosts: []string{"fedq.example.org"}})
	adminDir := filepath.Join(t.TempDir(), "admins", "alice")
	if err := a.WriteAdminCert(adminDir, "alice", testNow); err != nil {
		t.Fatalf("WriteAdminCert: %v", err)
	}
	for name, mode := range map[string]os.FileMode{
		ca.AdminKeyFile:  0o600,
		ca.AdminCertFile: 0o644,
		ca.CACertFile:    0o644,
		ca.ConfigFile:    0o644,
	} {
		fi, err := os.Stat(filepath.Join(adminDir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: permissions %#o, want %#o", name, fi.Mode().Perm(), mode)
		}
	}
	// Only what an admin client needs: no CA key, no server or signing key.
	for _, name := range []string{ca.CAKeyFile, ca.ServerKeyFile, ca.SigningKeyFile} {
		if _, err := os.Stat(filepath.Join(adminDir, name)); !os.IsNotExist(err) {
			t.Errorf("admin directory holds %s (stat: %v)", name, err)
		}
	}

	cd, err := ca.LoadAdmin(adminDir)
	if err != nil {
		t.Fatalf("LoadAdmin: %v", err)
	}
	if cd.Addr != a.Config.Addr {
		t.Errorf("Addr = %q, want %q", cd.Addr, a.Config.Addr)
	}
	if !cd.CA.Equal(a.CACert) {
		t.Error("admin directory's CA is not the coordinator's")
	}
	leaf, err := x509.ParseCertificate(cd.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "alice" {
		t.Errorf("CN = %q, want alice", leaf.Subject.CommonName)
	}
	if !slices.Equal(leaf.Subject.OrganizationalUnit, []string{transport.RoleAdmin}) {
		t.Errorf("OU = %q, want [%q]", leaf.Subject.OrganizationalUnit, transport.RoleAdmin)
	}
	verifyClient(t, leaf, a.CAPool())

	// The coordinator's own directory serves as an admin directory (Init's local admin),
	// and writing the admin certificate of the other directory left it alone.
	local, err := ca.LoadAdmin(dir)
	if err != nil {
		t.Fatalf("LoadAdmin(coordinator dir): %v", err)
	}
	ll, err := x509.ParseCertificate(local.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if ll.Subject.CommonName != "local-admin" || !slices.Equal(ll.Subject.OrganizationalUnit, []string{transport.RoleAdmin}) {
		t.Errorf("local admin subject %v", ll.Subject)
	}
	verifyClient(t, ll, a.CAPool())
	if local.Addr != a.Config.Addr || !local.CA.Equal(a.CACert) {
		t.Error("local admin directory has the wrong address or CA")
	}
	if b, err := ca.Load(dir); err != nil || !reflect.DeepEqual(b.Config, a.Config) {
		t.Errorf("coordinator directory changed: Load = %v, %v", b, err)
	}

	// An invalid name is refused.
	if err := a.WriteAdminCert(filepath.Join(t.TempDir(), "bad"), "a/b", testNow); err == nil {
		t.Error("WriteAdminCert accepted name a/b")
	}
}

func TestLoadAdminNoCredentials(t *testing.T) {
	dir := t.TempDir()
	cd, err := ca.LoadAdmin(dir)
	if err == nil {
		t.Fatal("LoadAdmin of an empty directory succeeded")
	}
	if cd != nil {
		t.Error("ClientDir returned with an error")
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "fedq admin cert") {
		t.Errorf("error %q should name the directory and give advice", msg)
	}
}
