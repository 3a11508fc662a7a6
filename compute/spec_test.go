package compute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltinParameterCounts(t *testing.T) {
	for _, c := range []struct {
		name  string
		count int
	}{{"2nn", 199210}, {"cnn", 1663370}, {"dpcnn", 26010}} {
		spec, _ := BuiltinSpec(c.name)
		m, err := New[float32](spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if m.NumParams() != c.count {
			t.Errorf("%s has %d parameters, want %d (McMahan et al. 2017; Papernot et al. 2021)", c.name, m.NumParams(), c.count)
		}
		// The spec counts them without building the model.
		if n, err := spec.NumParams(); err != nil || n != c.count {
			t.Errorf("%s: Spec.NumParams() = %d, %v; want %d", c.name, n, err, c.count)
		}
	}
}

func TestBuiltinRoundTripsThroughJSON(t *testing.T) {
	for _, name := range BuiltinNames() {
		spec, _ := BuiltinSpec(name)
		got, err := ParseSpec(spec.JSON())
		if err != nil {
			t.Fatal(err)
		}
		if string(got.JSON()) != string(spec.JSON()) {
			t.Errorf("%s: %s != %s", name, got.JSON(), spec.JSON())
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	cases := []struct{ spec, want string }{
		{`{"input":[4],"classes":2,"layers":[{"type":"softmaxx"}]}`, `layer 0: unknown type "softmaxx"`},
		{`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2,"kernel":3}]}`, "layer 0 (dense): only out applies"},
		{`{"input":[4],"classes":2,"layers":[{"type":"dense","out":3}]}`, "outputs [3], want [2]"},
		{`{"input":[4],"classes":2,"layers":[{"type":"conv2d","out":2,"kernel":3}]}`, "needs a [C,H,W] input"},
		{`{"input":[1,4,4],"classes":2,"layers":[{"type":"conv2d","out":2,"kernel":7}]}`, "larger than the padded input"},
		{`{"input":[1,4,4],"classes":2,"layers":[{"type":"maxpool2d","kernel":5}]}`, "larger than the input"},
		{`{"input":[4],"classes":2,"layers":[{"type":"dropout","p":1}]}`, "p must be in [0,1)"},
		{`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2,"name":"a"},{"type":"dense","out":2,"name":"a"}]}`, `duplicate name "a"`},
		{`{"input":[4],"classes":2,"layers":[{"type":"relu","name":"r"}]}`, "name is only for layers with parameters"},
		{`{"input":[4],"classes":2,"layers":[{"type":"tanh","p":0.5},{"type":"dense","out":2}]}`, "layer 0 (tanh): takes no parameters"},
		{`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}],"extra":1}`, `unknown field "extra"`},
		{`{"input":[],"classes":2,"layers":[]}`, "input must be"},
		{`{"input":[4],"classes":1,"layers":[{"type":"dense","out":1}]}`, "classes must be at least 2"},
		{`{"input":[4],"classes":2,"layers":[]}`, "need 1 to"},
		{`{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]} {}`, "trailing data"},
		{`{"input":[70000],"classes":2,"layers":[{"type":"dense","out":2}]}`, "out of range"},
		// Sizes whose products overflow an int must be refused, not wrap around to a
		// small parameter count.
		{`{"input":[1,2,2],"classes":2,"layers":[{"type":"conv2d","out":2,"kernel":4294967296,"pad":4294967295,"stride":1099511627776},{"type":"flatten"}]}`, "kernel must be in [1,65536]"},
		{`{"input":[65536,65536,65536],"classes":2,"layers":[{"type":"dense","out":2}]}`, "more than 67108864 values"},
		{`{"input":[1,65536,1],"classes":2,"layers":[{"type":"conv2d","out":65536,"kernel":65536,"pad":65535,"stride":65536},{"type":"flatten"}]}`, "weights exceed"},
		{`{"input":[1,8,8],"classes":2,"layers":[{"type":"maxpool2d","kernel":2,"stride":70000}]}`, "stride (in [1,65536])"},
		{`{"input":[8192,8192],"classes":2,"layers":[{"type":"dense","out":65536}]}`, "weights exceed"},
	}
	for _, c := range cases {
		_, err := ParseSpec([]byte(c.spec))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSpec(%s) = %v, want error containing %q", c.spec, err, c.want)
		}
	}
}

func TestResolveSpec(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	if err := os.WriteFile(path, []byte(`{"input":[3],"classes":2,"layers":[{"type":"dense","out":2}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"input":[3],"classes":2,"layers":[{"type":"nope"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ResolveSpec("cnn"); err != nil || s.Name != "cnn" {
		t.Fatalf("builtin: %v %v", s, err)
	}
	if s, err := ResolveSpec(path); err != nil || s.Layers[0].Out != 2 {
		t.Fatalf("file: %v %v", s, err)
	}
	if _, err := ResolveSpec(`{"input":[3],"classes":2,"layers":[{"type":"dense","out":2}]}`); err != nil {
		t.Fatalf("inline: %v", err)
	}
	if _, err := ResolveSpec(bad); err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), `unknown type "nope"`) {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := ResolveSpec("resnet"); err == nil || !strings.Contains(err.Error(), "neither a builtin") {
		t.Fatalf("unknown: %v", err)
	}
}
