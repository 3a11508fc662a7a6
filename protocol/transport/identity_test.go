package transport

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
)

func TestCertSignatures(t *testing.T) {
	_, pool, issue := testCA(t)
	_, _, otherIssue := testCA(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("keys of a round")
	for _, key := range []crypto.Signer{ec, ed} {
		cert := issue("site-1", RoleAgent, key)
		sig, err := KeySigner{Key: key}.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []CertVerifier{{Roots: pool}, NewCertVerifier(pool, nil)} {
			for range 2 { // the second time from the cache, if any
				if err := v.Verify("site-1", cert, msg, sig); err != nil {
					t.Fatalf("%T: %v", key, err)
				}
			}
		}
		v := NewCertVerifier(pool, nil)
		_ = v.Verify("site-1", cert, msg, sig)
		tests := []struct {
			name        string
			agent       string
			cert        []byte
			msg         []byte
			wantErrPart string
		}{
			{"other message", "site-1", cert, []byte("other"), "does not verify"},
			{"other agent", "site-2", cert, msg, "not agent site-2"},
			{"admin certificate", "site-1", issue("site-1", RoleAdmin, key), msg, "not agent"},
			{"other CA", "site-1", otherIssue("site-1", RoleAgent, key), msg, "certificate of site-1"},
			{"garbage", "site-1", []byte{1, 2, 3}, msg, "certificate of site-1"},
		}
		for _, tc := range tests {
			err := v.Verify(tc.agent, tc.cert, tc.msg, sig)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
				t.Errorf("%T %s: got %v, want an error with %q", key, tc.name, err, tc.wantErrPart)
			}
		}
	}
}
