package serve

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/internal/keyfile"
	"github.com/fedq/fedq/protocol"
)

// Metadata keys `fedq model pull` writes beside the signed version (see cmd/fedq).
const (
	// MetaTask names the task a pulled model belongs to.
	MetaTask = "fedq.task"
	// MetaVersionNumber is the pulled version's number, in decimal.
	MetaVersionNumber = "fedq.version.number"
)

// Model is a global model ready to be served: the network and what is known of its
// version. Once handed to a Server (Server.Swap), the network belongs to the server's
// workers: the caller must not run it or change its weights any more (a compute.Model is
// not safe for concurrent use, and its replicas share its weights).
type Model struct {
	// Net is the network, built for inference.
	Net *compute.Model[float32]
	// Version is the fedq version number; 0 for a model that carries none (a file from
	// `fedq train`).
	Version uint64
	// Header is the signed version header, when the signature and the weights' hash were
	// verified; nil otherwise.
	Header *protocol.VersionHeader
	// Task is the task the version belongs to, when known.
	Task string
}

// VersionString is Version as the Open Inference Protocol spells versions.
func (m *Model) VersionString() string { return strconv.FormatUint(m.Version, 10) }

// VerifyError is why a model failed verification: unsigned, signed by another key,
// or weights that are not the ones signed. A model that fails it must not be served.
type VerifyError struct {
	// Unsigned is true when the model carries no signed version at all.
	Unsigned bool
	// Err says what failed.
	Err error
}

// Error returns what failed.
func (e *VerifyError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *VerifyError) Unwrap() error { return e.Err }

func verifyError(format string, a ...any) error {
	return &VerifyError{Err: fmt.Errorf(format, a...)}
}

// isVerifyError reports whether err is (or wraps) a *VerifyError.
func isVerifyError(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}

// Verify checks that meta (a model file's or download's metadata) carries a version
// signed by pub, and that weights are the very weights it vouches for: their number and
// their SHA-256. It returns the verified header, or a *VerifyError.
func Verify(pub ed25519.PublicKey, meta map[string]string, weights []float32) (protocol.VersionHeader, error) {
	if meta[protocol.MetaVersion] == "" && meta[protocol.MetaSignature] == "" {
		return protocol.VersionHeader{}, &VerifyError{Unsigned: true,
			Err: fmt.Errorf("model is not signed: no %s or %s metadata (pull versions with `fedq model pull`)", protocol.MetaVersion, protocol.MetaSignature)}
	}
	h, err := protocol.VerifyVersion(pub, meta)
	if err != nil {
		return h, verifyError("verify signed version: %w", err)
	}
	if h.Params != uint64(len(weights)) {
		return h, verifyError("verify version %d: it is signed for %d parameters, the model has %d", h.Number, h.Params, len(weights))
	}
	if sum := protocol.HashWeights(weights); sum != h.Hash {
		return h, verifyError("verify version %d: the weights hash to %s, the signed version says %s: they were altered after signing",
			h.Number, sum, h.Hash)
	}
	return h, nil
}

// LoadSigningKey reads the coordinator's signing public key: dir/signing.pub, or the
// file itself when path is one.
func LoadSigningKey(path string) (ed25519.PublicKey, error) {
	file := path
	if !strings.HasSuffix(path, ".pub") {
		file = filepath.Join(path, ca.SigningPubFile)
	}
	k, err := keyfile.ReadPublicKey(file)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("load signing key %s: not an Ed25519 key", file)
	}
	return pub, nil
}

// LoadOptions configure LoadFile.
type LoadOptions struct {
	// VerifyWith, when not nil, is the coordinator's signing key: the file must carry a
	// version it signed, and weights that hash as the version says.
	VerifyWith ed25519.PublicKey
	// Compute configures the network's backend (Inference is always set).
	Compute compute.Options
}

// LoadFile loads a safetensors model written by fedq (`fedq train --out` or `fedq model
// pull`). With opt.VerifyWith it refuses a file that is unsigned, signed by another key,
// or whose weights were changed after signing. Without it the version number is read
// from the file, unverified.
func LoadFile(path string, opt LoadOptions) (*Model, error) {
	co := opt.Compute
	co.Inference = true
	net, meta, err := compute.LoadFile(path, co)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	m := &Model{Net: net, Task: meta[MetaTask]}
	if opt.VerifyWith != nil {
		h, err := Verify(opt.VerifyWith, meta, net.Values())
		if err != nil {
			return nil, fmt.Errorf("refusing to serve %s: %w", path, err)
		}
		m.Header, m.Version, m.Task = &h, h.Number, h.Task
		return m, nil
	}
	if text := meta[protocol.MetaVersion]; text != "" {
		if h, err := protocol.ParseVersionHeader([]byte(text)); err == nil {
			m.Version, m.Task = h.Number, h.Task
			return m, nil
		}
	}
	if s := meta[MetaVersionNumber]; s != "" {
		if m.Version, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, fmt.Errorf("load model %s: metadata %s=%q: %w", path, MetaVersionNumber, s, err)
		}
	}
	return m, nil
}
