package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

func TestVersionSignature(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	h := VersionHeader{Number: 7, Parent: 6, Task: "mnist", Round: 6, Params: 199210, Hash: Hash{9}}
	meta := SignedMeta(h, key)
	got, err := VerifyVersion(pub, meta)
	if err != nil || got != h {
		t.Fatalf("VerifyVersion = %+v, %v", got, err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	tampered := map[string]string{MetaVersion: string(VersionHeader{Number: 8, Parent: 6, Task: "mnist", Round: 6, Params: 199210, Hash: Hash{9}}.Text()), MetaSignature: meta[MetaSignature]}
	for name, tc := range map[string]struct {
		pub  ed25519.PublicKey
		meta map[string]string
		code ErrorCode
	}{
		"other key": {other, meta, CodeHashMismatch},
		"tampered":  {pub, tampered, CodeHashMismatch},
		"unsigned":  {pub, map[string]string{}, CodeInvalid},
		"bad b64":   {pub, map[string]string{MetaVersion: meta[MetaVersion], MetaSignature: "!!"}, CodeInvalid},
	} {
		if _, err := VerifyVersion(tc.pub, tc.meta); CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
}

func FuzzParseVersionHeader(f *testing.F) {
	f.Add(VersionHeader{Number: 1, Task: "t", Hash: Hash{1}}.Text())
	f.Add([]byte("fedq-version/1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseVersionHeader(b)
		if err != nil {
			return
		}
		if _, err := ParseVersionHeader(h.Text()); err != nil {
			t.Fatalf("re-parse of %q: %v", h.Text(), err)
		}
	})
}
