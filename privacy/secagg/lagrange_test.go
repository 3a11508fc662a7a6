package secagg

import (
	"testing"

	"github.com/cloudflare/circl/secretsharing"
)

func TestRecoverSecretMatchesCircl(t *testing.T) {
	rnd := newDetRand(5)
	for _, tc := range []struct{ t, n int }{{1, 1}, {2, 3}, {6, 10}, {19, 37}} {
		s := ristretto.RandomNonZeroScalar(rnd)
		shares := secretsharing.New(rnd, uint(tc.t-1), s).Share(uint(tc.n))
		// Any t shares, in any order.
		sub := append(shares[tc.n-tc.t:], shares[:0]...)
		for i, j := 0, len(sub)-1; i < j; i, j = i+1, j-1 {
			sub[i], sub[j] = sub[j], sub[i]
		}
		got, err := recoverSecret(tc.t, sub)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := secretsharing.Recover(uint(tc.t-1), sub)
		if !got.IsEqual(s) || !want.IsEqual(s) {
			t.Fatalf("t=%d n=%d: recovered another secret", tc.t, tc.n)
		}
		if tc.t > 1 {
			if _, err := recoverSecret(tc.t, sub[:tc.t-1]); err == nil {
				t.Fatalf("t=%d: recovered from t-1 shares", tc.t)
			}
			dup := append([]secretsharing.Share{sub[0]}, sub[:tc.t-1]...)
			if _, err := recoverSecret(tc.t, dup); err == nil {
				t.Fatalf("t=%d: duplicate IDs accepted", tc.t)
			}
		}
	}
}

func BenchmarkRecover(b *testing.B) {
	rnd := newDetRand(5)
	s := ristretto.RandomNonZeroScalar(rnd)
	shares := secretsharing.New(rnd, 18, s).Share(37)
	b.Run("fedq", func(b *testing.B) {
		for b.Loop() {
			_, _ = recoverSecret(19, shares)
		}
	})
	b.Run("circl", func(b *testing.B) {
		for b.Loop() {
			_, _ = secretsharing.Recover(18, shares)
		}
	})
}
