package protocol

import (
	"encoding/binary"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// CBOR decoding limits. Every frame is bounded by the reader's frame limit
// before it is decoded, and fxamacker/cbor checks that a whole item is
// well-formed (every announced length fits in the bytes at hand) before it
// allocates anything for it, so no length the peer claims can make the
// decoder allocate more than a small multiple of the frame size. These
// limits bound the shape of what is decoded on top of that.
const (
	// cborMaxNestedLevels bounds nesting of arrays and maps. The deepest
	// message (Hello → Capabilities → Datasets → DatasetInfo) uses 4.
	cborMaxNestedLevels = 16
	// cborMaxArrayElements bounds every CBOR array; the largest legitimate
	// one is TensorHeader.Tensors (MaxTensorsLimit).
	cborMaxArrayElements = MaxTensorsLimit
	// cborMaxMapPairs bounds every CBOR map (metrics, extra config, shares).
	cborMaxMapPairs = 16384
)

// codec holds the CBOR modes of the package. Modes are immutable and safe
// for concurrent use.
type codec struct {
	enc cbor.UserBufferEncMode
	dec cbor.DecMode
}

// wire is the package's codec, built once at initialisation and never
// modified afterwards.
var wire = mustCodec()

// newCodec builds the encoder and decoder modes:
//
//   - encoding is RFC 8949 §4.2.1 core deterministic (shortest integers and
//     floats, definite lengths, map keys sorted bytewise), so equal values
//     always encode to equal bytes and can be hashed or signed;
//   - decoding rejects indefinite lengths, tags, duplicate map keys and
//     invalid UTF-8, bounds nesting, arrays and maps, and ignores map keys it
//     does not know (forward compatibility: a newer peer may add fields).
func newCodec() (codec, error) {
	eo := cbor.CoreDetEncOptions()
	enc, err := eo.UserBufferEncMode()
	if err != nil {
		return codec{}, fmt.Errorf("protocol: building CBOR encoder: %w", err)
	}
	do := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   cborMaxNestedLevels,
		MaxArrayElements:  cborMaxArrayElements,
		MaxMapPairs:       cborMaxMapPairs,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorNone, // unknown keys are ignored
	}
	dec, err := do.DecMode()
	if err != nil {
		return codec{}, fmt.Errorf("protocol: building CBOR decoder: %w", err)
	}
	return codec{enc: enc, dec: dec}, nil
}

// mustCodec builds the package codec. The options are constants, so an error
// here is a programming error caught by every test run, not bad input.
func mustCodec() codec {
	c, err := newCodec()
	if err != nil {
		panic(err)
	}
	return c
}

// hostLittleEndian reports whether this machine stores integers
// little-endian, as the wire does. It selects the zero-copy tensor paths;
// the portable paths are correct on any host. Set once at initialisation.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
