package serve

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// requestOptions decode infer requests: the JSON v2 decoder (go-json-experiment, the
// implementation of Go's encoding/json/v2) reads a request once, where encoding/json
// scans it whole to validate and again to skip each raw field — over half the CPU of
// decoding a single image's request (BENCHMARKS.md). Names match case-insensitively, as
// encoding/json did; a member named twice, or text that is not UTF-8, is refused.
var requestOptions = jsonv2.MatchCaseInsensitiveNames(true)

// Tensor and datatype names of the Open Inference Protocol v2 that fedq models use.
const (
	// InputName is the one input tensor of every served model.
	InputName = "input"
	// LogitsName is the output tensor of the raw logits, n × classes.
	LogitsName = "logits"
	// LabelName is the output tensor of the predicted class (argmax of the logits), n.
	LabelName = "label"
	// DatatypeFP32 is the datatype of the input and of the logits.
	DatatypeFP32 = "FP32"
	// DatatypeINT64 is the datatype of the labels.
	DatatypeINT64 = "INT64"
	// Platform is the platform a served model reports in its metadata.
	Platform = "fedq"
)

// InferRequest is an Open Inference Protocol v2 inference request (REST, JSON tensors).
type InferRequest struct {
	// ID, when set, is echoed in the answer.
	ID string `json:"id,omitempty"`
	// Parameters are accepted and ignored.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	// Inputs must hold exactly one tensor, InputName.
	Inputs []RequestInput `json:"inputs"`
	// Outputs selects LogitsName and/or LabelName; empty means both.
	Outputs []RequestOutput `json:"outputs,omitempty"`
}

// RequestInput is one input tensor of an InferRequest. Data holds the values in
// row-major order, as a flat array or nested arrays.
type RequestInput struct {
	// Name must be InputName.
	Name string `json:"name"`
	// Shape is [n, input shape...] or [n, input size].
	Shape []int64 `json:"shape"`
	// Datatype must be DatatypeFP32.
	Datatype string `json:"datatype"`
	// Parameters are accepted and ignored.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	// Data holds the n·input size values.
	Data json.RawMessage `json:"data"`
}

// RequestOutput names an output the client wants; none means all.
type RequestOutput struct {
	// Name is LogitsName or LabelName.
	Name string `json:"name"`
	// Parameters are accepted and ignored.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// TensorMetadata describes a model's input or output tensor; -1 is a variable dimension.
type TensorMetadata struct {
	Name     string  `json:"name"`     // the tensor's name
	Datatype string  `json:"datatype"` // FP32 or INT64
	Shape    []int64 `json:"shape"`    // -1: any size
}

// ModelMetadata is the answer to GET /v2/models/{name}.
type ModelMetadata struct {
	Name     string           `json:"name"`     // the model's name in the URLs
	Versions []string         `json:"versions"` // the version being served
	Platform string           `json:"platform"` // Platform
	Inputs   []TensorMetadata `json:"inputs"`   // the one input
	Outputs  []TensorMetadata `json:"outputs"`  // logits and label
}

// ServerMetadata is the answer to GET /v2.
type ServerMetadata struct {
	Name       string   `json:"name"`       // "fedq"
	Version    string   `json:"version"`    // the fedq build
	Extensions []string `json:"extensions"` // none yet
}

// decoded is a validated infer request: n samples of the model's input, and which
// outputs to send.
type decoded struct {
	id     string
	x      []float32
	n      int
	logits bool
	label  bool
}

// requestError is a client error: it becomes an HTTP status and {"error": msg}.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, a ...any) *requestError {
	return &requestError{status: 400, msg: fmt.Sprintf(format, a...)}
}

// HeaderContentLength is the HTTP header of the protocol's binary tensor data
// extension: the request body is that many bytes of JSON, followed by the raw tensor data
// of the inputs whose parameters give "binary_data_size".
const HeaderContentLength = "Inference-Header-Content-Length"

// decodeInfer parses and checks an infer request's JSON body for a model whose one
// sample has the shape input (inSize values). The input's shape must be [n, input...] or
// [n, inSize]; its values must be finite numbers that fit in a float32.
func decodeInfer(body []byte, input []int, inSize int) (*decoded, error) {
	return decodeInferBinary(body, -1, input, inSize)
}

// decodeInferBinary is decodeInfer for the binary tensor data extension: with
// headerLen ≥ 0 the first headerLen bytes of body are the JSON request and the rest the
// input's raw little-endian float32 values ("parameters": {"binary_data_size": N}).
func decodeInferBinary(body []byte, headerLen int, input []int, inSize int) (*decoded, error) {
	var raw []byte
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, badRequest("%s is %d, the body has %d bytes", HeaderContentLength, headerLen, len(body))
		}
		body, raw = body[:headerLen], body[headerLen:]
	}
	var req InferRequest
	if err := jsonv2.Unmarshal(body, &req, requestOptions); err != nil {
		if headerLen < 0 && bytes.Contains(body, []byte("binary_data_size")) {
			return nil, badRequest("malformed infer request: %v (binary tensor data needs the %s header)", err, HeaderContentLength)
		}
		return nil, badRequest("malformed infer request: %v", err)
	}
	if len(req.Inputs) != 1 {
		return nil, badRequest("want exactly one input tensor named %q, got %d", InputName, len(req.Inputs))
	}
	in := &req.Inputs[0]
	if in.Name != InputName {
		return nil, badRequest("unknown input %q: the model's one input is %q", in.Name, InputName)
	}
	if in.Datatype != DatatypeFP32 {
		return nil, badRequest("input %q has datatype %q, want %s", in.Name, in.Datatype, DatatypeFP32)
	}
	n, err := checkShape(in.Shape, input, inSize)
	if err != nil {
		return nil, err
	}
	var x []float32
	if size, ok, err := binaryDataSize(in.Parameters); err != nil {
		return nil, err
	} else if ok {
		if headerLen < 0 {
			return nil, badRequest("input %q has binary_data_size but the request has no %s header", in.Name, HeaderContentLength)
		}
		if size != len(raw) || size != 4*n*inSize {
			return nil, badRequest("input %q: binary_data_size %d, %d bytes after the JSON, the shape needs %d", in.Name, size, len(raw), 4*n*inSize)
		}
		if x, err = rawFP32(raw); err != nil {
			return nil, badRequest("input %q data: %v", in.Name, err)
		}
	} else {
		if len(raw) > 0 {
			return nil, badRequest("%d bytes of binary data after the JSON, but no input has binary_data_size", len(raw))
		}
		if x, err = decodeFP32(in.Data, n*inSize); err != nil {
			return nil, badRequest("input %q data: %v", in.Name, err)
		}
	}
	d := &decoded{id: req.ID, x: x, n: n, logits: len(req.Outputs) == 0, label: len(req.Outputs) == 0}
	for _, o := range req.Outputs {
		switch o.Name {
		case LogitsName:
			d.logits = true
		case LabelName:
			d.label = true
		default:
			return nil, badRequest("unknown output %q: the model has %q and %q", o.Name, LogitsName, LabelName)
		}
	}
	return d, nil
}

// checkShape returns the batch size of shape, which must be [n, input...] or [n, inSize].
func checkShape(shape []int64, input []int, inSize int) (int, error) {
	want := func() error {
		return badRequest("input shape %v: want [n%s] or [n, %d] with n ≥ 1", shape, dims(input), inSize)
	}
	if len(shape) < 2 || shape[0] < 1 || shape[0] > math.MaxInt32 {
		return 0, want()
	}
	rest := shape[1:]
	flat := len(rest) == 1 && rest[0] == int64(inSize)
	same := len(rest) == len(input)
	for i := 0; same && i < len(rest); i++ {
		same = rest[i] == int64(input[i])
	}
	if !flat && !same {
		return 0, want()
	}
	return int(shape[0]), nil
}

func dims(s []int) string {
	var b strings.Builder
	for _, d := range s {
		fmt.Fprintf(&b, ", %d", d)
	}
	return b.String()
}

// decodeFP32 reads exactly want numbers from a JSON array, flat or nested (row-major),
// into float32s. It refuses anything but numbers and arrays, values that are not finite
// in float32, and a count other than want.
func decodeFP32(data []byte, want int) ([]float32, error) {
	out := make([]float32, 0, want)
	i, depth := 0, 0
	skip := func() {
		for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
			i++
		}
	}
	skip()
	if i >= len(data) || data[i] != '[' {
		return nil, fmt.Errorf("want an array of numbers")
	}
	// expectValue is true after '[' or ',': a value (number or array) must come next,
	// except ']' right after '['.
	expectValue, afterOpen := true, false
	for {
		skip()
		if i >= len(data) {
			return nil, fmt.Errorf("unterminated array")
		}
		c := data[i]
		switch {
		case c == '[':
			if !expectValue {
				return nil, fmt.Errorf("missing ',' at offset %d", i)
			}
			depth++
			if depth > 32 {
				return nil, fmt.Errorf("arrays nested more than 32 deep")
			}
			i++
			afterOpen = true
			continue
		case c == ']':
			if expectValue && !afterOpen {
				return nil, fmt.Errorf("missing value before ']' at offset %d", i)
			}
			depth--
			i++
			expectValue, afterOpen = false, false
			if depth == 0 {
				skip()
				if i != len(data) {
					return nil, fmt.Errorf("unexpected data after the array at offset %d", i)
				}
				if len(out) != want {
					return nil, fmt.Errorf("%d values, the shape needs %d", len(out), want)
				}
				return out, nil
			}
			continue
		case c == ',':
			if expectValue {
				return nil, fmt.Errorf("unexpected ',' at offset %d", i)
			}
			i++
			expectValue, afterOpen = true, false
			continue
		case c == '-' || (c >= '0' && c <= '9'):
			if !expectValue {
				return nil, fmt.Errorf("missing ',' at offset %d", i)
			}
			j := i
			for j < len(data) && isNumberByte(data[j]) {
				j++
			}
			v, err := parseFP32(data[i:j])
			if err != nil {
				return nil, fmt.Errorf("%q at offset %d is not a finite float32", data[i:j], i)
			}
			if len(out) == want {
				return nil, fmt.Errorf("more values than the shape's %d", want)
			}
			out = append(out, v)
			i = j
			expectValue, afterOpen = false, false
		default:
			end := min(i+12, len(data))
			return nil, fmt.Errorf("%q at offset %d: want a finite number (NaN and Inf are refused)", data[i:end], i)
		}
	}
}

// binaryDataSize reads an input's "binary_data_size" parameter, if it has one.
func binaryDataSize(params json.RawMessage) (int, bool, error) {
	if len(params) == 0 {
		return 0, false, nil
	}
	var p struct {
		Size *int64 `json:"binary_data_size"`
	}
	if err := jsonv2.Unmarshal(params, &p, requestOptions); err != nil {
		return 0, false, badRequest("input parameters: %v", err)
	}
	if p.Size == nil {
		return 0, false, nil
	}
	if *p.Size < 0 || *p.Size > math.MaxInt32 {
		return 0, false, badRequest("binary_data_size %d is out of range", *p.Size)
	}
	return int(*p.Size), true, nil
}

// rawFP32 reads little-endian float32 values, refusing NaN and infinities.
func rawFP32(b []byte) ([]float32, error) {
	out := make([]float32, len(b)/4)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if v-v != 0 {
			return nil, fmt.Errorf("value %d is %v: want finite numbers", i, v)
		}
		out[i] = v
	}
	return out, nil
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// appendResponse appends the JSON infer response for d's logits to b.
func appendResponse(b []byte, name, version string, d *decoded, classes int, logits []float32) []byte {
	b = append(b, `{"model_name":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"model_version":`...)
	b = appendJSONString(b, version)
	if d.id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, d.id)
	}
	b = append(b, `,"outputs":[`...)
	if d.logits {
		b = append(b, `{"name":"logits","datatype":"FP32","shape":[`...)
		b = strconv.AppendInt(b, int64(d.n), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(classes), 10)
		b = append(b, `],"data":[`...)
		for i, v := range logits {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendFloat32(b, v)
		}
		b = append(b, "]}"...)
	}
	if d.label {
		if d.logits {
			b = append(b, ',')
		}
		b = append(b, `{"name":"label","datatype":"INT64","shape":[`...)
		b = strconv.AppendInt(b, int64(d.n), 10)
		b = append(b, `],"data":[`...)
		for i := range d.n {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(argmax(logits[i*classes:(i+1)*classes])), 10)
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}\n"...)
}

// appendFloat32 writes v in the shortest form that parses back to the same float32.
// Logits are finite for finite inputs and weights; a non-finite one (a diverged model)
// is written as null, as JSON has no NaN or Inf.
func appendFloat32(b []byte, v float32) []byte {
	if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, float64(v), 'g', -1, 32)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 (in a client's request id)
// is written as U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s) // the error only reports replaced invalid UTF-8
	return b
}

// argmax returns the index of the largest value (the first of equals); NaN loses.
func argmax(v []float32) int {
	best := 0
	for i := 1; i < len(v); i++ {
		if v[i] > v[best] || (v[best] != v[best] && v[i] == v[i]) {
			best = i
		}
	}
	return best
}
