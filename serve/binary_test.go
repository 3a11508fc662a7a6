package serve

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedq/fedq/compute"
)

// binaryBody is an infer request with the binary tensor data extension: the JSON header,
// then the raw little-endian float32 values; it returns the body and the header length.
func binaryBody(x []float32, shape []int, size int) ([]byte, int) {
	head, _ := json.Marshal(map[string]any{"id": "bin", "inputs": []any{map[string]any{
		"name": InputName, "shape": shape, "datatype": DatatypeFP32, "parameters": map[string]any{"binary_data_size": size}}}})
	body := slices.Clone(head)
	for _, v := range x {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
	}
	return body, len(head)
}

func postBinary(t *testing.T, url string, body []byte, headerLen string) (int, *inferResponse, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	if headerLen != "" {
		req.Header.Set(HeaderContentLength, headerLen)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	var out inferResponse
	dec := json.NewDecoder(bytes.NewReader(raw.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %d answer %q: %v", resp.StatusCode, raw.String(), err)
	}
	return resp.StatusCode, &out, raw.String()
}

// TestBinaryTensorData checks the binary tensor data extension: raw float32 inputs give
// exactly the JSON path's logits, and inconsistent sizes, missing headers and NaN are
// refused with 400.
func TestBinaryTensorData(t *testing.T) {
	spec, _ := compute.BuiltinSpec("2nn")
	m, ref := model(t, spec, 3, 5)
	s := New(Options{Logger: quietLogger()})
	if err := s.Swap("m", m); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, s) + "/v2/models/m/infer"
	const n = 3
	x := inputs(n, ref.InputSize(), 9)
	body, hl := binaryBody(x, []int{n, 1, 28, 28}, 4*len(x))
	code, resp, raw := postBinary(t, url, body, strconv.Itoa(hl))
	if code != 200 {
		t.Fatalf("binary infer: %d %s", code, raw)
	}
	logits, _ := resp.output(t, LogitsName)
	if want := ref.Forward(x, n, false); !slices.Equal(logits, want) {
		t.Fatal("binary input's logits differ from Forward")
	}
	nan := slices.Clone(x)
	nan[5] = float32(math.NaN())
	nanBody, _ := binaryBody(nan, []int{n, 1, 28, 28}, 4*len(x))
	short, shl := binaryBody(x[:len(x)-1], []int{n, 1, 28, 28}, 4*(len(x)-1))
	for _, tc := range []struct {
		name, header string
		body         []byte
		want         string
	}{
		{"no header", "", body, "binary tensor data needs the " + HeaderContentLength + " header"},
		{"header past the body", strconv.Itoa(len(body) + 1), body, "the body has"},
		{"header not a number", "x", body, "is not a byte count"},
		{"size short of the shape", strconv.Itoa(shl), short, "the shape needs"},
		{"NaN", strconv.Itoa(hl), nanBody, "want finite numbers"},
	} {
		code, _, raw := postBinary(t, url, tc.body, tc.header)
		if code != 400 || !strings.Contains(raw, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, code, raw, tc.want)
		}
	}
	if _, meta := get(t, strings.TrimSuffix(url, "/models/m/infer")); fmt.Sprint(meta["extensions"]) != "[binary_tensor_data]" {
		t.Errorf("server metadata %v", meta)
	}
}
