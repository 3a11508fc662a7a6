package serve

import (
	"math"
	"testing"
)

// FuzzDecodeInfer feeds arbitrary bodies to the infer request decoder: it must never
// panic, and what it accepts must be exactly n finite samples of the model's input.
func FuzzDecodeInfer(f *testing.F) {
	f.Add([]byte(`{"id":"1","inputs":[{"name":"input","shape":[1,1,2,2],"datatype":"FP32","data":[1,2,3,4]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,-8e-3]]}],"outputs":[{"name":"label"}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[[[1]],[2,[3]],4]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,1e39]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,,3,4]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[9223372036854775807,4],"datatype":"FP32","data":[]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[[],1,2,3,4]}]}`))
	input := []int{1, 2, 2}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := decodeInfer(body, input, 4)
		checkDecoded(t, d, err)
	})
}

// checkDecoded fails t unless err is a request error, or d is exactly n ≥ 1 finite
// samples of 4 values with an output selected.
func checkDecoded(t *testing.T, d *decoded, err error) {
	t.Helper()
	if err != nil {
		if _, ok := err.(*requestError); !ok {
			t.Fatalf("error %T is not a request error: %v", err, err)
		}
		return
	}
	if d.n < 1 || len(d.x) != d.n*4 {
		t.Fatalf("accepted %d values for %d samples", len(d.x), d.n)
	}
	for _, v := range d.x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("accepted a non-finite value %v", v)
		}
	}
	if !d.logits && !d.label {
		t.Fatal("no output selected")
	}
}

// FuzzDecodeInferBinary feeds arbitrary bodies and header lengths to the decoder of the
// binary tensor data extension, with the same guarantees as FuzzDecodeInfer.
func FuzzDecodeInferBinary(f *testing.F) {
	head := []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`)
	f.Add(append(head, make([]byte, 16)...), len(head))
	f.Add(append(head, 0, 0, 0xc0, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), len(head))
	f.Add(head, len(head)+3)
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		d, err := decodeInferBinary(body, headerLen, []int{1, 2, 2}, 4)
		checkDecoded(t, d, err)
	})
}
