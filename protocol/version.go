package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tensor-stream metadata keys of a model download (TensorHeader.Meta).
const (
	// MetaVersion holds the version's signed header text (VersionHeader.Text).
	MetaVersion = "fedq.version"
	// MetaSignature holds the coordinator's Ed25519 signature of that text, in
	// standard base64.
	MetaSignature = "fedq.signature"
)

// VersionHeader is what the coordinator signs of a model version: enough to know which
// weights these are, from which task and round, and their SHA-256 (which is also the
// hash of the model-download tensor stream's raw bytes).
type VersionHeader struct {
	Number uint64
	Parent uint64 // 0: the task's initial model
	Task   string
	Round  uint64 // 0: the initial model
	Params uint64 // number of float32 parameters
	Hash   Hash
}

// Text is the exact signed text: UTF-8 lines "key=value", in this order, each ending in
// a newline:
//
//	fedq-version/1
//	number=N
//	parent=N
//	task=NAME
//	round=N
//	params=N
//	sha256=HEX
func (h VersionHeader) Text() []byte {
	return fmt.Appendf(nil, "fedq-version/1\nnumber=%d\nparent=%d\ntask=%s\nround=%d\nparams=%d\nsha256=%s\n",
		h.Number, h.Parent, h.Task, h.Round, h.Params, h.Hash)
}

// Sign returns the Ed25519 signature of h's text.
func (h VersionHeader) Sign(key ed25519.PrivateKey) []byte { return ed25519.Sign(key, h.Text()) }

// VerifyVersion checks a model download's metadata against the coordinator's signing
// key and returns the header it vouches for.
func VerifyVersion(pub ed25519.PublicKey, meta map[string]string) (VersionHeader, error) {
	text, sig64 := meta[MetaVersion], meta[MetaSignature]
	if text == "" || sig64 == "" {
		return VersionHeader{}, NewError(CodeInvalid, "model is not signed: no %s or %s metadata", MetaVersion, MetaSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		return VersionHeader{}, NewError(CodeInvalid, "model signature is not base64: %v", err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, []byte(text), sig) {
		return VersionHeader{}, NewError(CodeHashMismatch, "model signature does not verify with the coordinator's signing key")
	}
	h, err := ParseVersionHeader([]byte(text))
	if err != nil {
		return VersionHeader{}, err
	}
	if !bytes.Equal(h.Text(), []byte(text)) {
		return VersionHeader{}, NewError(CodeInvalid, "signed version text is not in canonical form")
	}
	return h, nil
}

// ParseVersionHeader parses VersionHeader.Text.
func ParseVersionHeader(text []byte) (VersionHeader, error) {
	var h VersionHeader
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	if len(lines) != 7 || lines[0] != "fedq-version/1" {
		return h, NewError(CodeInvalid, "not a fedq-version/1 header")
	}
	keys := []string{"number", "parent", "task", "round", "params", "sha256"}
	for i, k := range keys {
		v, ok := strings.CutPrefix(lines[i+1], k+"=")
		if !ok {
			return h, NewError(CodeInvalid, "version header line %d: want %s=", i+2, k)
		}
		var err error
		switch k {
		case "number":
			h.Number, err = strconv.ParseUint(v, 10, 64)
		case "parent":
			h.Parent, err = strconv.ParseUint(v, 10, 64)
		case "task":
			h.Task = v
		case "round":
			h.Round, err = strconv.ParseUint(v, 10, 64)
		case "params":
			h.Params, err = strconv.ParseUint(v, 10, 64)
		case "sha256":
			var b []byte
			if b, err = hex.DecodeString(v); err == nil && len(b) != len(h.Hash) {
				err = fmt.Errorf("%d bytes", len(b))
			}
			copy(h.Hash[:], b)
		}
		if err != nil {
			return h, NewError(CodeInvalid, "version header %s: %v", k, err)
		}
	}
	return h, nil
}

// SignedMeta returns the tensor-stream metadata carrying h and its signature.
func SignedMeta(h VersionHeader, key ed25519.PrivateKey) map[string]string {
	return map[string]string{MetaVersion: string(h.Text()), MetaSignature: base64.StdEncoding.EncodeToString(h.Sign(key))}
}

// HashWeights is the SHA-256 of weights as little-endian float32 values: a version's hash
// (VersionHeader.Hash), under which the coordinator stores its weights and which a
// model download's raw tensor bytes hash to.
func HashWeights(weights []float32) Hash {
	h := sha256.New()
	if b, ok := LittleEndianBytes(weights); ok {
		h.Write(b)
	} else {
		buf := make([]byte, 0, 64<<10)
		for len(weights) > 0 {
			n := min(len(weights), cap(buf)/4)
			buf = buf[:0]
			for _, v := range weights[:n] {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			h.Write(buf)
			weights = weights[n:]
		}
	}
	var sum Hash
	h.Sum(sum[:0])
	return sum
}

// LittleEndianBytes returns w's memory viewed as bytes, without copying, and true when
// this host stores float32 little-endian — then those bytes are w's little-endian wire
// and blob encoding, so hashing or writing them needs no conversion. On another host it
// returns nil and false, and the caller converts. The bytes alias w: they change with it.
func LittleEndianBytes(w []float32) ([]byte, bool) {
	if !hostLittleEndian {
		return nil, false
	}
	return asBytes(w), true
}
