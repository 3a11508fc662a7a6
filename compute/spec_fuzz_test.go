package compute

import (
	"testing"
)

// FuzzParseSpec feeds model specs — read from files and from task specs sent over the
// network — to ParseSpec. It must never panic; a spec it accepts has a parameter count and
// survives its own JSON encoding.
func FuzzParseSpec(f *testing.F) {
	for _, name := range BuiltinNames() {
		s, _ := BuiltinSpec(name)
		f.Add(s.JSON())
	}
	for _, s := range []string{
		`{"input":[12],"classes":3,"layers":[{"type":"dense","out":32},{"type":"relu"},{"type":"dropout","p":0.1},{"type":"dense","out":3}]}`,
		`{"input":[1,28,28],"classes":10,"layers":[{"type":"conv2d","out":4,"kernel":3,"pad":1},{"type":"maxpool2d","kernel":2},{"type":"flatten"},{"type":"dense","out":10}]}`,
		`{"input":[1,2000000000,2000000000],"classes":10,"layers":[{"type":"dense","out":10}]}`,
		`{"input":[3],"classes":0,"layers":[]}`,
		`{"input":[1,4,4],"classes":2,"layers":[{"type":"conv2d","out":2,"kernel":9}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			return
		}
		n, err := s.NumParams()
		if err != nil || n < 0 {
			t.Fatalf("accepted spec: NumParams = %d, %v\n%s", n, err, data)
		}
		s2, err := ParseSpec(s.JSON())
		if err != nil {
			t.Fatalf("accepted spec does not re-parse: %v\n%s", err, s.JSON())
		}
		if n2, _ := s2.NumParams(); n2 != n {
			t.Fatalf("round trip changed the parameter count: %d → %d", n, n2)
		}
		// Small accepted specs must also build and run: the shapes plan() promised are the
		// ones the layers compute.
		plan, _ := s.plan()
		work := 0
		for _, l := range plan {
			work = max(work, prod(l.in), prod(l.out))
		}
		if n > 4096 || work > 4096 {
			return
		}
		m, err := New[float32](s, Options{Seed: 1, Inference: true})
		if err != nil {
			t.Fatalf("accepted spec does not build: %v\n%s", err, data)
		}
		if got := len(m.Forward(make([]float32, 2*prod(s.Input)), 2, false)); got != 2*s.Classes {
			t.Fatalf("forward pass of 2 samples gave %d logits, want %d", got, 2*s.Classes)
		}
	})
}
