package compute

import (
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
	cases := []struct{ path, want string }{
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
