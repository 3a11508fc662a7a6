package protocol

import (
	"encoding/hex"
	"fmt"
	"math"
)

// Field limits enforced by the messages' Validate methods. They are part of
// the protocol: a peer that sends more is rejected with [CodeInvalid].
const (
	// MaxIDLen bounds identifiers: agent, session, task IDs (bytes).
	MaxIDLen = 256
	// MaxNameLen bounds names: datasets, metrics, features, config keys
	// (bytes).
	MaxNameLen = 256
	// MaxShortStringLen bounds short free-form strings: software version,
	// backend, device, optimizer, kinds, methods (bytes).
	MaxShortStringLen = 128
	// MaxErrorMessageLen bounds Error.Msg, Goodbye.Reason and
	// TaskDecline.Reason (bytes).
	MaxErrorMessageLen = 4096
	// MaxDatasets bounds Hello's dataset list.
	MaxDatasets = 1024
	// MaxGPUs bounds Hello's GPU list.
	MaxGPUs = 64
	// MaxFeatures bounds Hello's feature list.
	MaxFeatures = 64
	// MaxMetrics bounds every metrics map.
	MaxMetrics = 256
	// MaxExtraConfig bounds TrainConfig.Extra and TensorHeader.Meta.
	MaxExtraConfig = 256
	// MaxExtraValueLen bounds a value of TrainConfig.Extra or
	// TensorHeader.Meta (bytes).
	MaxExtraValueLen = 4096
	// MaxTokenLen bounds an enrollment token (bytes).
	MaxTokenLen = 512
	// MaxCertLen bounds a DER certificate or CSR (bytes).
	MaxCertLen = 16 << 10
	// MaxModelSpecLen bounds TaskOffer.ModelSpec (bytes).
	MaxModelSpecLen = 256 << 10
	// MaxSignatureLen bounds a signature (bytes).
	MaxSignatureLen = 1024
	// MaxSecAggPeers bounds SecAgg rosters, share maps and
	// survivor/dropped lists.
	MaxSecAggPeers = 16384
)

// Hash is a SHA-256 digest: of model weights (a version's hash) or of the
// raw bytes of a tensor stream. On the wire it is a 32-byte CBOR byte
// string; the zero Hash means "absent" and is encoded as an empty byte
// string (or the field is omitted).
type Hash [32]byte

// IsZero reports whether h is the zero (absent) hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns h in lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalBinary returns the 32 bytes of h, or nothing for the zero hash.
// The CBOR encoder uses it to encode h as a byte string.
func (h Hash) MarshalBinary() ([]byte, error) { return marshal32(h) }

// UnmarshalBinary sets h from a byte string of exactly 32 bytes, or to zero
// from an empty one; any other length is an error.
func (h *Hash) UnmarshalBinary(b []byte) error { return unmarshal32((*[32]byte)(h), b, "Hash") }

// PublicKey is a 32-byte public key (X25519 for secure aggregation). On the
// wire it is a 32-byte CBOR byte string; the zero key means "absent".
type PublicKey [32]byte

// IsZero reports whether k is the zero (absent) key.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// String returns k in lowercase hex.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// MarshalBinary returns the 32 bytes of k, or nothing for the zero key.
func (k PublicKey) MarshalBinary() ([]byte, error) { return marshal32(k) }

// UnmarshalBinary sets k from a byte string of exactly 32 bytes, or to zero
// from an empty one; any other length is an error.
func (k *PublicKey) UnmarshalBinary(b []byte) error {
	return unmarshal32((*[32]byte)(k), b, "PublicKey")
}

func marshal32(a [32]byte) ([]byte, error) {
	if a == [32]byte{} {
		return nil, nil
	}
	return a[:], nil
}

func unmarshal32(dst *[32]byte, b []byte, what string) error {
	switch len(b) {
	case 0:
		*dst = [32]byte{}
		return nil
	case 32:
		copy(dst[:], b)
		return nil
	}
	return fmt.Errorf("%s must be a byte string of 32 bytes (or empty for none), got %d bytes", what, len(b))
}

// checkLen checks that a string or byte field is at most max bytes.
func checkLen[S ~string | ~[]byte](field string, s S, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes, over the limit of %d", field, len(s), limit)
	}
	return nil
}

// checkRequired checks that a string or byte field is 1..max bytes.
func checkRequired[S ~string | ~[]byte](field string, s S, limit int) error {
	if len(s) == 0 {
		return fmt.Errorf("%s is empty; it is required", field)
	}
	return checkLen(field, s, limit)
}

// checkCount checks that a list or map field has at most max entries.
func checkCount(field string, n, limit int) error {
	if n > limit {
		return fmt.Errorf("%s has %d entries, over the limit of %d", field, n, limit)
	}
	return nil
}

// checkNonNegFinite checks that a float field is finite and >= 0.
func checkNonNegFinite(field string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return fmt.Errorf("%s is %v; it must be a finite number >= 0", field, f)
	}
	return nil
}

// checkPosFinite checks that a float field is finite and > 0.
func checkPosFinite(field string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return fmt.Errorf("%s is %v; it must be a finite number > 0", field, f)
	}
	return nil
}

// checkMetrics checks a metrics map: bounded size, non-empty bounded names.
// Values may be any float, NaN included (a diverged loss is worth
// reporting).
func checkMetrics(field string, m map[string]float64) error {
	if err := checkCount(field, len(m), MaxMetrics); err != nil {
		return err
	}
	for k := range m {
		if err := checkRequired(field+" key", k, MaxNameLen); err != nil {
			return err
		}
	}
	return nil
}

// checkStringMap checks a string map: bounded size, non-empty bounded keys,
// bounded values.
func checkStringMap(field string, m map[string]string) error {
	if err := checkCount(field, len(m), MaxExtraConfig); err != nil {
		return err
	}
	for k, v := range m {
		if err := checkRequired(field+" key", k, MaxNameLen); err != nil {
			return err
		}
		if err := checkLen(fmt.Sprintf("%s[%q]", field, k), v, MaxExtraValueLen); err != nil {
			return err
		}
	}
	return nil
}

// checkStrings checks a list of strings: bounded count, each 1..maxLen.
func checkStrings(field string, l []string, maxCount, maxLen int) error {
	if err := checkCount(field, len(l), maxCount); err != nil {
		return err
	}
	for i, s := range l {
		if err := checkRequired(fmt.Sprintf("%s[%d]", field, i), s, maxLen); err != nil {
			return err
		}
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
