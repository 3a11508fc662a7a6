package compute

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedq/fedq/compute/safetensors"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			spec, _ := BuiltinSpec(name)
			m, err := New[float32](spec, Options{Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := SaveFile(path, m, map[string]string{"fedq.version": "7"}); err != nil {
				t.Fatal(err)
			}
			got, meta, err := LoadFile(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Values(), m.Values()) {
				t.Fatal("parameters differ after a round trip")
			}
			if meta["fedq.version"] != "7" || meta["format"] != "pt" {
				t.Fatalf("metadata = %v", meta)
			}
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// PyTorch names and layouts.
			want := map[string]map[string][]int{
				"2nn":   {"fc1.weight": {200, 784}, "fc3.bias": {10}},
				"cnn":   {"conv1.weight": {32, 1, 5, 5}, "conv2.weight": {64, 32, 5, 5}, "fc1.weight": {512, 3136}, "fc2.bias": {10}},
				"dpcnn": {"conv1.weight": {16, 1, 8, 8}, "conv2.weight": {32, 16, 4, 4}, "fc1.weight": {32, 512}, "fc2.bias": {10}},
			}[name]
			if want == nil {
				t.Fatalf("no PyTorch layout to check for builtin %s", name)
			}
			for n, shape := range want {
				info, ok := f.Info(n)
				if !ok || !slices.Equal(info.Shape, shape) {
					t.Errorf("tensor %s: %v, want shape %v", n, info.Shape, shape)
				}
			}
		})
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	spec, _ := BuiltinSpec("2nn")
	m, _ := New[float32](spec, Options{Seed: 1})
	good := filepath.Join(dir, "good.safetensors")
	if err := SaveFile(good, m, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongShape := filepath.Join(dir, "shape.safetensors")
	ts := tensors(m)
	ts[0].Shape = []int{784, 200}
	if err := safetensors.WriteFile(wrongShape, ts, metadata(m, nil)); err != nil {
		t.Fatal(err)
	}
	noSpec := filepath.Join(dir, "nospec.safetensors")
	if err := safetensors.WriteFile(noSpec, tensors(m), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "extra.safetensors")
	ts = append(tensors(m), safetensors.WriteTensor{Name: "fc9.weight", Shape: []int{1}, F32: []float32{1}})
	if err := safetensors.WriteFile(extra, ts, metadata(m, nil)); err != nil {
		t.Fatal(err)
	}
	// A tiny file whose spec claims the largest model a spec may describe: refused before
	// the model is allocated.
	huge := filepath.Join(dir, "huge.safetensors")
	hugeSpec := `{"input":[8192,8192],"classes":7,"layers":[{"type":"dense","out":7}]}`
	if err := safetensors.WriteFile(huge, []safetensors.WriteTensor{{Name: "fc1.bias", Shape: []int{8}, F32: make([]float32, 8)}},
		map[string]string{MetaSpec: hugeSpec}); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{huge, "has 469762055 parameters but its tensors hold 8 values"},
		{write("trunc.safetensors", data[:len(data)/2]), "trunc.safetensors"},
		{write("garbage.safetensors", []byte("not a model at all")), "garbage.safetensors"},
		{wrongShape, `"fc1.weight" has shape [784 200]`},
		{noSpec, "give the model spec"},
		{extra, `"fc9.weight" is not a parameter`},
		{filepath.Join(dir, "missing.safetensors"), "missing.safetensors"},
	}
	for _, c := range cases {
		_, _, err := LoadFile(c.path, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadFile(%s) = %v, want error containing %q", filepath.Base(c.path), err, c.want)
		}
	}
}

// FuzzLoad feeds model files to the loader behind LoadFile (fedq eval, fedq serve). It
// must never panic nor allocate more than the file could fill; a model it loads has the
// parameters its spec promises and answers a forward pass.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"2nn"} {
		spec, _ := BuiltinSpec(name)
		m, _ := New[float32](spec, Options{Seed: 1})
		var b bytes.Buffer
		if err := Save(&b, m, nil); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	small, _ := ParseSpec([]byte(`{"input":[3],"classes":2,"layers":[{"type":"dense","out":2}]}`))
	m, _ := New[float32](small, Options{Seed: 1})
	var b bytes.Buffer
	if err := Save(&b, m, map[string]string{"round": "3"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := safetensors.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		m, _, err := load(file, Options{Inference: true})
		if err != nil {
			return
		}
		n, _ := m.spec.NumParams()
		if len(m.values) != n || 4*int64(n) > int64(len(data)) {
			t.Fatalf("loaded %d values for a %d-parameter spec from %d bytes", len(m.values), n, len(data))
		}
		if got := len(m.Forward(make([]float32, m.InputSize()), 1, false)); got != m.spec.Classes {
			t.Fatalf("forward pass gave %d logits, want %d", got, m.spec.Classes)
		}
	})
}
