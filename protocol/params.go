package protocol

import (
	"fmt"
	"slices"
)

// A model's parameters travel as one tensor stream: a float32 tensor per named
// parameter, in the model's fixed order, whose raw bytes concatenated are the flat
// parameter vector. These helpers convert between that stream and a flat vector.

// LayoutSize is the number of values of a parameter layout.
func LayoutSize(layout []TensorInfo) int {
	n := 0
	for _, t := range layout {
		n += t.NumElements()
	}
	return n
}

// ParamRefs returns tensor references for the flat vector flat laid out as layout: views
// into flat, no copies.
func ParamRefs(layout []TensorInfo, flat []float32) []TensorRef {
	refs := make([]TensorRef, len(layout))
	off := 0
	for i, t := range layout {
		n := t.NumElements()
		refs[i] = TensorRef{Info: t, F32: flat[off : off+n]}
		off += n
	}
	return refs
}

// ReadParams reads the tensors of a stream that must hold exactly those of layout
// (names, float32, shapes, order) into dst. A stream of another model is refused with
// CodeInvalid before any value is read. The caller then calls tr.Finish, and must not
// use dst if that fails.
func ReadParams(tr *TensorReader, layout []TensorInfo, dst []float32) error {
	got := tr.Header().Tensors
	if len(got) != len(layout) {
		return NewError(CodeInvalid, "stream has %d tensors, the model %d", len(got), len(layout))
	}
	for i, t := range layout {
		g := got[i]
		if g.Name != t.Name || g.DType != DTypeF32 || !slices.Equal(g.Shape, t.Shape) {
			return NewError(CodeInvalid, "tensor %d is %s %s%v, the model has %s F32%v", i, g.Name, g.DType, g.Shape, t.Name, t.Shape)
		}
	}
	if len(dst) != LayoutSize(layout) {
		return fmt.Errorf("protocol: ReadParams into %d values, the layout has %d", len(dst), LayoutSize(layout))
	}
	off := 0
	for range layout {
		info, ok := tr.Next()
		if !ok {
			return NewError(CodeMalformed, "stream ended early")
		}
		n := info.NumElements()
		if err := tr.ReadInto(dst[off : off+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// MaskedTensor names the one U32 tensor of a masked (securely aggregated) update.
const MaskedTensor = "secagg.masked"

// MaskedLen is the length of the masked vector of a model with params parameters: the
// update's values, the training loss, and the weight.
func MaskedLen(params int) int { return params + 2 }

// ReadMasked reads a masked update — exactly one U32 tensor named MaskedTensor of n
// values — into dst (length n). The caller then calls tr.Finish.
func ReadMasked(tr *TensorReader, dst []uint32) error {
	got := tr.Header().Tensors
	if len(got) != 1 || got[0].Name != MaskedTensor || got[0].DType != DTypeU32 || !slices.Equal(got[0].Shape, []int{len(dst)}) {
		return NewError(CodeInvalid, "a masked update is one %s tensor %q of shape [%d]; the stream has %d tensors, the first %v",
			DTypeU32, MaskedTensor, len(dst), len(got), firstInfo(got))
	}
	return tr.ReadIntoU32(dst)
}

func firstInfo(ts []TensorInfo) any {
	if len(ts) == 0 {
		return "absent"
	}
	return fmt.Sprintf("%s %q %v", ts[0].DType, ts[0].Name, ts[0].Shape)
}
