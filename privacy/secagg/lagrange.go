package secagg

import (
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// recoverSecret reconstructs a Shamir secret from the first t shares, interpolating at
// zero: secret = Σ yᵢ·λᵢ with λᵢ = Π_{j≠i} xⱼ/(xⱼ − xᵢ). It does what
// secretsharing.Recover does with one field inversion instead of one per share
// (Montgomery's batch inversion) — the coordinator reconstructs hundreds of secrets a
// round — and returns an error, not a panic, for repeated share IDs.
func recoverSecret(t int, shares []secretsharing.Share) (group.Scalar, error) {
	if len(shares) < t || t < 1 {
		return nil, fmt.Errorf("secagg: %d shares, %d needed", len(shares), t)
	}
	sh := shares[:t]
	num := make([]group.Scalar, t)
	den := make([]group.Scalar, t)
	tmp := ristretto.NewScalar()
	for i := range sh {
		num[i] = ristretto.NewScalar().SetUint64(1)
		den[i] = ristretto.NewScalar().SetUint64(1)
		for j := range sh {
			if j == i {
				continue
			}
			num[i].Mul(num[i], sh[j].ID)
			den[i].Mul(den[i], tmp.Sub(sh[j].ID, sh[i].ID))
		}
		if den[i].IsZero() {
			return nil, errors.New("secagg: two shares with the same ID")
		}
	}
	// prefix[i] = den[0]·…·den[i-1]; one inversion of the product, then back down.
	prefix := make([]group.Scalar, t+1)
	prefix[0] = ristretto.NewScalar().SetUint64(1)
	for i := range den {
		prefix[i+1] = ristretto.NewScalar().Mul(prefix[i], den[i])
	}
	inv := ristretto.NewScalar().Inv(prefix[t]) // 1/(den[0]·…·den[t-1])
	secret := ristretto.NewScalar()
	for i := t - 1; i >= 0; i-- {
		invDen := ristretto.NewScalar().Mul(inv, prefix[i]) // 1/den[i]
		inv.Mul(inv, den[i])
		secret.Add(secret, tmp.Mul(tmp.Mul(sh[i].Value, num[i]), invDen))
	}
	return secret, nil
}
