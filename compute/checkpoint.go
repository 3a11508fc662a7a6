package compute

import (
	"fmt"
	"io"
	"slices"

	"github.com/fedq/fedq/compute/safetensors"
)

// Metadata keys fedq writes into a safetensors file.
const (
	// MetaSpec holds the model's Spec as JSON, so a file describes itself.
	MetaSpec = "fedq.spec"
	// MetaFormat is "pt": tensors are named and laid out as the equivalent
	// torch.nn.Module's state_dict, so torch's load_state_dict accepts the file.
	MetaFormat = "format"
)

// tensors returns the model's parameters as safetensors write tensors (no copies).
func tensors(m *Model[float32]) []safetensors.WriteTensor {
	ts := make([]safetensors.WriteTensor, len(m.ps))
	for i, p := range m.ps {
		ts[i] = safetensors.WriteTensor{Name: p.Name, Shape: p.Shape, F32: p.Value}
	}
	return ts
}

func metadata(m *Model[float32], extra map[string]string) map[string]string {
	meta := map[string]string{MetaFormat: "pt", MetaSpec: string(m.spec.JSON())}
	for k, v := range extra {
		if k != MetaSpec && k != MetaFormat {
			meta[k] = v
		}
	}
	return meta
}

// Save writes m's parameters to w in the safetensors format with PyTorch names and
// layouts, plus the spec and extra in the metadata.
func Save(w io.Writer, m *Model[float32], extra map[string]string) error {
	return safetensors.Write(w, tensors(m), metadata(m, extra))
}

// SaveFile writes m to path atomically (a temporary file, fsync, rename): a crash leaves
// the old file or the new one, never a torn one.
func SaveFile(path string, m *Model[float32], extra map[string]string) error {
	if err := safetensors.WriteFile(path, tensors(m), metadata(m, extra)); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// LoadFile builds a model from a safetensors file written by SaveFile: the spec comes
// from the file's metadata and the parameters from its tensors. It returns the file's
// metadata too.
func LoadFile(path string, opt Options) (*Model[float32], map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	m, meta, err := load(f, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, meta, nil
}

// load builds the model f's metadata describes and reads its parameters from f.
func load(f *safetensors.File, opt Options) (*Model[float32], map[string]string, error) {
	meta := f.Metadata()
	raw, ok := meta[MetaSpec]
	if !ok {
		return nil, nil, fmt.Errorf("no %q in its metadata (not saved by fedq); give the model spec explicitly", MetaSpec)
	}
	spec, err := ParseSpec([]byte(raw))
	if err != nil {
		return nil, nil, err
	}
	// The file must hold every parameter, so a spec larger than its tensors is corrupt:
	// refuse it before allocating the model it describes (a few bytes of metadata could
	// otherwise ask for gigabytes).
	n, err := spec.NumParams()
	if err != nil {
		return nil, nil, err
	}
	var held int64
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		held += max(info.NumElements(), 0) // the header's parser bounds each by its bytes
	}
	if int64(n) > held {
		return nil, nil, fmt.Errorf("its spec has %d parameters but its tensors hold %d values: the file is corrupt or truncated", n, held)
	}
	m, err := New[float32](spec, opt)
	if err != nil {
		return nil, nil, err
	}
	if err := m.LoadWeights(f); err != nil {
		return nil, nil, err
	}
	return m, meta, nil
}

// LoadWeights reads every parameter of m from f by name. Each tensor must exist with
// exactly the parameter's shape; tensors m does not have are an error too, so a file of
// another model is never half-loaded. On error m's parameters are unchanged.
func (m *Model[T]) LoadWeights(f *safetensors.File) error {
	want := map[string]bool{}
	for _, p := range m.ps {
		want[p.Name] = true
		info, ok := f.Info(p.Name)
		if !ok {
			return fmt.Errorf("tensor %q is missing", p.Name)
		}
		if !slices.Equal(info.Shape, p.Shape) {
			return fmt.Errorf("tensor %q has shape %v, model %q needs %v", p.Name, info.Shape, m.spec.Name, p.Shape)
		}
	}
	for _, name := range f.Names() {
		if !want[name] {
			return fmt.Errorf("tensor %q is not a parameter of model %q", name, m.spec.Name)
		}
	}
	next := make([]T, len(m.values))
	buf := make([]float32, 0)
	for _, p := range m.ps {
		buf = grow(buf, len(p.Value))
		if err := f.ReadFloat32(p.Name, buf); err != nil {
			return err
		}
		dst := next[p.Offset : p.Offset+len(p.Value)]
		for i, v := range buf {
			dst[i] = T(v)
		}
	}
	copy(m.values, next)
	m.refreeze()
	return nil
}
