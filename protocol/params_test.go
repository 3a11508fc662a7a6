package protocol

import (
	"bytes"
	"slices"
	"testing"
)

func TestParamsRoundTrip(t *testing.T) {
	layout := []TensorInfo{{Name: "fc1.weight", DType: DTypeF32, Shape: []int{2, 3}}, {Name: "fc1.bias", DType: DTypeF32, Shape: []int{2}}}
	flat := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	var buf bytes.Buffer
	sum, err := WriteTensors(&buf, ParamRefs(layout, flat), nil)
	if err != nil {
		t.Fatal(err)
	}
	stream := slices.Clone(buf.Bytes())
	tr, err := NewTensorReader(bytes.NewReader(stream), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, LayoutSize(layout))
	if err := ReadParams(tr, layout, dst); err != nil {
		t.Fatal(err)
	}
	if err := tr.Finish(); err != nil || tr.Sum() != sum || !slices.Equal(dst, flat) {
		t.Fatalf("round trip: %v %v %v", err, dst, tr.Sum() == sum)
	}
	other := []TensorInfo{layout[0], {Name: "fc2.bias", DType: DTypeF32, Shape: []int{2}}}
	tr, _ = NewTensorReader(bytes.NewReader(stream), Limits{})
	if err := ReadParams(tr, other, dst); CodeOf(err) != CodeInvalid {
		t.Fatalf("another model's stream: %v", err)
	}
}
