package compute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Spec declares a model: the shape of one input sample, the number of classes and a list
// of layers. It is what a task names, what travels with a model and what a safetensors
// file stores in its metadata, so a saved model describes itself.
type Spec struct {
	// Name is a label for people (e.g. "cnn"); it does not affect the model.
	Name string `json:"name,omitempty"`
	// Input is the shape of one sample without the batch dimension: [C, H, W] for images
	// (NCHW, as PyTorch) or [F] for feature vectors.
	Input []int `json:"input"`
	// Classes is the number of outputs of the last layer (the logits).
	Classes int `json:"classes"`
	// Layers run in order; the output of the last one must have Classes values.
	Layers []LayerSpec `json:"layers"`
}

// LayerSpec declares one layer. Which fields apply depends on Type:
//
//	dense      Out (features). Flattens its input, as torch.nn.Linear after nn.Flatten.
//	conv2d     Out (channels), Kernel, Stride (default 1), Pad (default 0). Input [C,H,W].
//	maxpool2d  Kernel, Stride (default Kernel). Input [C,H,W]; windows must fit exactly
//	           (floor mode, as PyTorch's default).
//	relu       no fields.
//	tanh       no fields: the hyperbolic tangent (bounded; what DP-SGD models prefer).
//	dropout    P, the probability of zeroing an activation while training (inverted
//	           dropout: survivors are scaled by 1/(1-P)).
//	flatten    no fields.
type LayerSpec struct {
	Type string `json:"type"`
	// Name prefixes the layer's parameters ("fc1" gives "fc1.weight" and "fc1.bias").
	// Empty means automatic: fc1, fc2, … for dense and conv1, conv2, … for conv2d,
	// matching the names of the equivalent torch.nn.Module.
	Name   string  `json:"name,omitempty"`
	Out    int     `json:"out,omitempty"`
	Kernel int     `json:"kernel,omitempty"`
	Stride int     `json:"stride,omitempty"`
	Pad    int     `json:"pad,omitempty"`
	P      float64 `json:"p,omitempty"`
}

// Layer types a LayerSpec may name.
const (
	LayerDense   = "dense"
	LayerConv2D  = "conv2d"
	LayerMaxPool = "maxpool2d"
	LayerReLU    = "relu"
	LayerTanh    = "tanh"
	LayerDropout = "dropout"
	LayerFlatten = "flatten"
)

var layerTypes = []string{LayerDense, LayerConv2D, LayerMaxPool, LayerReLU, LayerTanh, LayerDropout, LayerFlatten}

// Limits that keep a spec from describing a model no machine could hold.
const (
	maxLayers      = 256
	maxDim         = 1 << 16
	maxParamsTotal = 1 << 31 / 4
	maxActivations = 1 << 26 // values of one sample at a layer's output (or the input)
)

// BuiltinSpec returns a builtin model by name: the two of McMahan et al. (2017), and a
// small CNN for DP-SGD.
//
//	2nn    784-200-200-10 multilayer perceptron with ReLU: 199,210 parameters.
//	cnn    conv5x5/32 (pad 2) → ReLU → maxpool2 → conv5x5/64 (pad 2) → ReLU → maxpool2 →
//	       fc512 → ReLU → fc10: 1,663,370 parameters.
//	dpcnn  conv8x8/16 (stride 2, pad 3) → tanh → maxpool2 (stride 1) → conv4x4/32
//	       (stride 2) → tanh → maxpool2 (stride 1) → fc32 → tanh → fc10: 26,010
//	       parameters — the MNIST network of Papernot et al. (2021) and Tramèr & Boneh
//	       (2021) for DP-SGD, where few parameters mean little noise in total and tanh
//	       keeps per-example gradients from outgrowing the clip.
func BuiltinSpec(name string) (Spec, bool) {
	switch name {
	case "2nn":
		return Spec{Name: "2nn", Input: []int{1, 28, 28}, Classes: 10, Layers: []LayerSpec{
			{Type: LayerFlatten},
			{Type: LayerDense, Out: 200}, {Type: LayerReLU},
			{Type: LayerDense, Out: 200}, {Type: LayerReLU},
			{Type: LayerDense, Out: 10},
		}}, true
	case "cnn":
		return Spec{Name: "cnn", Input: []int{1, 28, 28}, Classes: 10, Layers: []LayerSpec{
			{Type: LayerConv2D, Out: 32, Kernel: 5, Pad: 2}, {Type: LayerReLU},
			{Type: LayerMaxPool, Kernel: 2},
			{Type: LayerConv2D, Out: 64, Kernel: 5, Pad: 2}, {Type: LayerReLU},
			{Type: LayerMaxPool, Kernel: 2},
			{Type: LayerFlatten},
			{Type: LayerDense, Out: 512}, {Type: LayerReLU},
			{Type: LayerDense, Out: 10},
		}}, true
	case "dpcnn":
		return Spec{Name: "dpcnn", Input: []int{1, 28, 28}, Classes: 10, Layers: []LayerSpec{
			{Type: LayerConv2D, Out: 16, Kernel: 8, Stride: 2, Pad: 3}, {Type: LayerTanh},
			{Type: LayerMaxPool, Kernel: 2, Stride: 1},
			{Type: LayerConv2D, Out: 32, Kernel: 4, Stride: 2}, {Type: LayerTanh},
			{Type: LayerMaxPool, Kernel: 2, Stride: 1},
			{Type: LayerFlatten},
			{Type: LayerDense, Out: 32}, {Type: LayerTanh},
			{Type: LayerDense, Out: 10},
		}}, true
	}
	return Spec{}, false
}

// BuiltinNames lists the names BuiltinSpec knows.
func BuiltinNames() []string { return []string{"2nn", "cnn", "dpcnn"} }

// ParseSpec decodes a JSON spec strictly (unknown fields are errors) and validates it.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("parse model spec: %w", err)
	}
	if dec.More() {
		return Spec{}, errors.New("parse model spec: trailing data after the JSON object")
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// ResolveSpec turns what a user typed into a spec: a builtin name ("2nn", "cnn", "dpcnn"), inline
// JSON (starting with '{'), or the path of a JSON file.
func ResolveSpec(arg string) (Spec, error) {
	if s, ok := BuiltinSpec(arg); ok {
		return s, nil
	}
	if strings.HasPrefix(strings.TrimSpace(arg), "{") {
		return ParseSpec([]byte(arg))
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Spec{}, fmt.Errorf("model %q is neither a builtin (%s) nor a spec file", arg, strings.Join(BuiltinNames(), ", "))
		}
		return Spec{}, fmt.Errorf("read model spec %s: %w", arg, err)
	}
	s, err := ParseSpec(data)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", arg, err)
	}
	return s, nil
}

// JSON returns the spec as compact JSON.
func (s Spec) JSON() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Spec holds only strings and numbers
	}
	return b
}

// plannedLayer is a validated layer with its resolved name and shapes.
type plannedLayer struct {
	LayerSpec
	in, out []int
}

// NumParams is the number of parameter values a model of this spec has, without
// building one.
func (s Spec) NumParams() (int, error) {
	plan, err := s.plan()
	if err != nil {
		return 0, err
	}
	_, n := paramDefs(plan)
	return n, nil
}

// Validate checks the spec and reports the first problem, naming the layer and field.
func (s Spec) Validate() error {
	_, err := s.plan()
	return err
}

// plan validates the spec and resolves every layer's name, defaults and shapes.
func (s Spec) plan() ([]plannedLayer, error) {
	if len(s.Input) == 0 || len(s.Input) > 3 {
		return nil, fmt.Errorf("model spec: input must be [C,H,W] or [F], got %v", s.Input)
	}
	for _, d := range s.Input {
		if d < 1 || d > maxDim {
			return nil, fmt.Errorf("model spec: input dimension %d out of range [1,%d]", d, maxDim)
		}
	}
	if prod(s.Input) > maxActivations {
		return nil, fmt.Errorf("model spec: input %v has more than %d values", s.Input, maxActivations)
	}
	if s.Classes < 2 {
		return nil, fmt.Errorf("model spec: classes must be at least 2, got %d", s.Classes)
	}
	if len(s.Layers) == 0 || len(s.Layers) > maxLayers {
		return nil, fmt.Errorf("model spec: need 1 to %d layers, got %d", maxLayers, len(s.Layers))
	}
	shape := slices.Clone(s.Input)
	counts := map[string]int{}
	names := map[string]bool{}
	params := 0
	out := make([]plannedLayer, len(s.Layers))
	for i, l := range s.Layers {
		where := fmt.Sprintf("model spec: layer %d (%s)", i, l.Type)
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, a...))
		}
		p := plannedLayer{LayerSpec: l, in: slices.Clone(shape)}
		hasParams := l.Type == LayerDense || l.Type == LayerConv2D
		if !hasParams && l.Name != "" {
			return nil, bad("name is only for layers with parameters")
		}
		switch l.Type {
		case LayerDense:
			if l.Out < 1 || l.Out > maxDim {
				return nil, bad("out must be in [1,%d], got %d", maxDim, l.Out)
			}
			if l.Kernel != 0 || l.Stride != 0 || l.Pad != 0 || l.P != 0 {
				return nil, bad("only out applies")
			}
			in := prod(shape)
			if exceeds(maxParamsTotal, in, l.Out) {
				return nil, bad("%d×%d weights exceed %d parameters", l.Out, in, maxParamsTotal)
			}
			params += in*l.Out + l.Out
			shape = []int{l.Out}
		case LayerConv2D:
			if len(shape) != 3 {
				return nil, bad("needs a [C,H,W] input, got %v", shape)
			}
			if l.Out < 1 || l.Out > maxDim {
				return nil, bad("out (channels) must be in [1,%d], got %d", maxDim, l.Out)
			}
			if l.Kernel < 1 || l.Kernel > maxDim {
				return nil, bad("kernel must be in [1,%d], got %d", maxDim, l.Kernel)
			}
			if l.Stride == 0 {
				p.Stride = 1
			}
			if p.Stride < 1 || p.Stride > maxDim || l.Pad < 0 || l.Pad >= l.Kernel {
				return nil, bad("need stride ≥ 1 and 0 ≤ pad < kernel, got stride %d pad %d", l.Stride, l.Pad)
			}
			if l.P != 0 {
				return nil, bad("p does not apply")
			}
			oh := (shape[1]+2*l.Pad-l.Kernel)/p.Stride + 1
			ow := (shape[2]+2*l.Pad-l.Kernel)/p.Stride + 1
			if shape[1]+2*l.Pad < l.Kernel || shape[2]+2*l.Pad < l.Kernel {
				return nil, bad("kernel %d is larger than the padded input %v", l.Kernel, shape)
			}
			if exceeds(maxParamsTotal, l.Out, shape[0], l.Kernel, l.Kernel) {
				return nil, bad("%d×%d×%d×%d weights exceed %d parameters", l.Out, shape[0], l.Kernel, l.Kernel, maxParamsTotal)
			}
			params += l.Out*shape[0]*l.Kernel*l.Kernel + l.Out
			shape = []int{l.Out, oh, ow}
		case LayerMaxPool:
			if len(shape) != 3 {
				return nil, bad("needs a [C,H,W] input, got %v", shape)
			}
			if l.Kernel < 1 || l.Kernel > maxDim {
				return nil, bad("kernel must be in [1,%d], got %d", maxDim, l.Kernel)
			}
			if l.Stride == 0 {
				p.Stride = l.Kernel
			}
			if p.Stride < 1 || p.Stride > maxDim || l.Pad != 0 || l.Out != 0 || l.P != 0 {
				return nil, bad("only kernel and stride (in [1,%d]) apply", maxDim)
			}
			if shape[1] < l.Kernel || shape[2] < l.Kernel {
				return nil, bad("kernel %d is larger than the input %v", l.Kernel, shape)
			}
			shape = []int{shape[0], (shape[1]-l.Kernel)/p.Stride + 1, (shape[2]-l.Kernel)/p.Stride + 1}
		case LayerReLU, LayerTanh, LayerFlatten:
			if l.Out != 0 || l.Kernel != 0 || l.Stride != 0 || l.Pad != 0 || l.P != 0 {
				return nil, bad("takes no parameters")
			}
			if l.Type == LayerFlatten {
				shape = []int{prod(shape)}
			}
		case LayerDropout:
			if !(l.P >= 0 && l.P < 1) {
				return nil, bad("p must be in [0,1), got %v", l.P)
			}
			if l.Out != 0 || l.Kernel != 0 || l.Stride != 0 || l.Pad != 0 {
				return nil, bad("only p applies")
			}
		default:
			return nil, fmt.Errorf("model spec: layer %d: unknown type %q (want one of %s)", i, l.Type, strings.Join(layerTypes, ", "))
		}
		if hasParams {
			prefix := map[string]string{LayerDense: "fc", LayerConv2D: "conv"}[l.Type]
			counts[prefix]++
			if p.Name == "" {
				p.Name = fmt.Sprintf("%s%d", prefix, counts[prefix])
			}
			if names[p.Name] {
				return nil, bad("duplicate name %q", p.Name)
			}
			names[p.Name] = true
		}
		if params > maxParamsTotal {
			return nil, fmt.Errorf("%s: model exceeds %d parameters", where, maxParamsTotal)
		}
		if prod(shape) > maxActivations {
			return nil, fmt.Errorf("%s: output %v is too large", where, shape)
		}
		p.out = slices.Clone(shape)
		out[i] = p
	}
	if len(shape) != 1 || shape[0] != s.Classes {
		return nil, fmt.Errorf("model spec: the last layer outputs %v, want [%d] (classes)", shape, s.Classes)
	}
	return out, nil
}

// exceeds says whether the product of factors (each ≥ 0) is above limit, without
// overflowing.
func exceeds(limit int, factors ...int) bool {
	p := 1
	for _, f := range factors {
		if f != 0 && p > limit/f {
			return true
		}
		p *= f
	}
	return p > limit
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}
