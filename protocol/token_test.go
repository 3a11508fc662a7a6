package protocol

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func sampleToken() *JoinToken {
	t := &JoinToken{Addr: "coord.example:4433", ID: "tok-1", Secret: bytes.Repeat([]byte{7}, 32)}
	t.CAHash[0] = 1
	return t
}

func TestJoinTokenRoundTrip(t *testing.T) {
	tok := sampleToken()
	s, err := tok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, TokenPrefix) {
		t.Fatalf("token %q lacks prefix", s)
	}
	got, err := ParseJoinToken("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != tok.Addr || got.ID != tok.ID || got.CAHash != tok.CAHash || !got.SecretMatches(tok.Secret) {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
}

func TestParseJoinTokenErrors(t *testing.T) {
	good, _ := sampleToken().Encode()
	noHash := sampleToken()
	noHash.CAHash = Hash{}
	b, _ := wire.enc.Marshal(noHash)
	cases := []struct{ in, want string }{
		{"", "does not start with"},
		{"fedq2.abc", "does not start with"},
		{TokenPrefix + "!!!", "damaged"},
		{good[:len(good)-5], "damaged"},
		{TokenPrefix + strings.Repeat("A", MaxTokenLen), "more than"},
		{TokenPrefix + encodeRaw(b), "CAHash is missing"},
	}
	for _, c := range cases {
		if _, err := ParseJoinToken(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseJoinToken(%.40q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	good, _ := sampleToken().Encode()
	f.Add(good)
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + "oWE")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if tok.Validate() != nil {
			t.Fatal("accepted an invalid token")
		}
		again, err := tok.Encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := ParseJoinToken(again); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func encodeRaw(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
