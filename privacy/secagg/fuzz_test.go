package secagg

import (
	"maps"
	"slices"
	"testing"
)

// setupShared runs a 5-member round through share keys and returns the clients and
// the forwarded ciphertexts.
func setupShared(t testing.TB) (*Server, map[string]*Client, map[string]map[string][]byte, Config) {
	cfg := config(5, 4, 3, 9)
	srv, cs, fw := shareKeys(t, cfg, newIDs(cfg.Members, 1))
	return srv, cs, fw, cfg
}

// FuzzReceiveShares feeds a client share ciphertexts from the network: the genuine one
// with bytes flipped (mask, XORed in; bytes past its end are appended). Anything but
// the genuine ciphertext must be refused, without panicking.
func FuzzReceiveShares(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(make([]byte, 200))
	f.Add(append(make([]byte, 100), 1))
	f.Fuzz(func(t *testing.T, mask []byte) {
		_, cs, fw, cfg := setupShared(t)
		m := cfg.Members[0]
		in := maps.Clone(fw[m])
		from := slices.Sorted(maps.Keys(in))[0]
		ct := slices.Clone(in[from])
		genuine := true
		for i, b := range mask {
			if i < len(ct) {
				ct[i] ^= b
			} else {
				ct = append(ct, b)
			}
			if b != 0 || i >= len(in[from]) {
				genuine = false
			}
		}
		in[from] = ct
		err := cs[m].ReceiveShares(in)
		if genuine != (err == nil) {
			t.Fatalf("genuine %v, error %v", genuine, err)
		}
	})
}

// FuzzAddReveals feeds the server reveals from the network: malformed ones are refused
// whole, without panicking.
func FuzzAddReveals(f *testing.F) {
	f.Add("agent-0001", []byte{revealSelf, 1, 2, 3})
	f.Add("agent-0000", append([]byte{revealSelf}, make([]byte, 32)...))
	f.Add("agent-0004", append([]byte{revealMask}, make([]byte, 32)...))
	f.Add("nobody", []byte{})
	f.Fuzz(func(t *testing.T, about string, share []byte) {
		srv, cs, fw, cfg := setupShared(t)
		for _, m := range cfg.Members {
			_ = cs[m].ReceiveShares(fw[m])
			y, _ := cs[m].MaskedInput(make([]float32, 8), 1, quantRNG(m))
			_ = srv.AddMasked(m, y)
		}
		surv, err := srv.CloseMasked()
		if err != nil {
			t.Fatal(err)
		}
		rv, _ := cs[surv[0]].Unmask(surv)
		bad := maps.Clone(rv)
		old, held := bad[about]
		genuine := held && slices.Equal(old, share)
		bad[about] = share
		if err := srv.AddReveals(surv[0], bad); err != nil {
			if genuine {
				t.Fatalf("genuine reveals refused: %v", err)
			}
			return
		}
		if !held {
			t.Fatalf("a reveal about %q, which it does not hold, was taken", about)
		}
		// Taken: the others reveal too, after it, so its share is among those used.
		for _, m := range surv[1:] {
			r, _ := cs[m].Unmask(surv)
			if err := srv.AddReveals(m, r); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err = srv.Finish()
		if genuine != (err == nil) {
			t.Fatalf("genuine %v, finish error %v", genuine, err)
		}
	})
}
