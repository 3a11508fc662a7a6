// Package cuda finds NVIDIA GPUs at run time, without cgo: it loads the CUDA driver
// library (libcuda.so.1) with purego, initialises the driver, and lists the devices with
// their names, memory and compute capability. When there is no usable GPU it says why —
// no driver library, a driver too old for the symbols fedq needs, no device — so that
// `--device auto` can fall back to the CPU and `--device cuda` can fail with a message
// an operator can act on.
//
// Only the probe is here. The training backend (cuBLAS GEMMs, own PTX kernels, pooled
// device memory) needs a GPU to be written and checked against the CPU backend, and is
// not part of this build: Select refuses cuda with that reason.
package cuda

import (
	"fmt"
	"strconv"
	"strings"
)

// Device is one GPU the driver reports.
type Device struct {
	Index  int    `json:"index"`
	Name   string `json:"name"`
	Memory uint64 `json:"memory_bytes"`
	// Major and Minor are the compute capability.
	Major int `json:"cc_major"`
	Minor int `json:"cc_minor"`
}

// Report is what Probe found.
type Report struct {
	// Library is the driver library that was loaded (or tried).
	Library string `json:"library"`
	// DriverVersion is the CUDA version the driver supports, e.g. 12040 for 12.4.
	DriverVersion int      `json:"driver_version,omitempty"`
	Devices       []Device `json:"devices,omitempty"`
	// Reason says why no GPU can be used; empty when Devices is not.
	Reason string `json:"reason,omitempty"`
}

// Available reports whether at least one device was found.
func (r Report) Available() bool { return len(r.Devices) > 0 && r.Reason == "" }

// MinDriverVersion is the oldest CUDA driver API fedq accepts (12.0).
const MinDriverVersion = 12000

// DefaultLibrary is the driver library's name.
const DefaultLibrary = "libcuda.so.1"

// Probe loads the driver library (DefaultLibrary when library is empty) and lists the
// devices. It never fails: what went wrong is in the report's Reason.
func Probe(library string) Report {
	if library == "" {
		library = DefaultLibrary
	}
	return probe(library)
}

// Kind is where training runs.
type Kind string

// Device kinds.
const (
	Auto Kind = "auto"
	CPU  Kind = "cpu"
	CUDA Kind = "cuda"
)

// Choice is a parsed --device flag.
type Choice struct {
	Kind  Kind
	Index int // for CUDA
}

// String writes the choice as the flag does.
func (c Choice) String() string {
	if c.Kind == CUDA {
		return fmt.Sprintf("cuda:%d", c.Index)
	}
	return string(c.Kind)
}

// ParseChoice reads --device: auto, cpu, cuda or cuda:N.
func ParseChoice(s string) (Choice, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "auto":
		return Choice{Kind: Auto}, nil
	case "cpu":
		return Choice{Kind: CPU}, nil
	case "cuda", "gpu":
		return Choice{Kind: CUDA}, nil
	}
	if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
		n, err := strconv.Atoi(rest)
		if err == nil && n >= 0 {
			return Choice{Kind: CUDA, Index: n}, nil
		}
	}
	return Choice{}, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", s)
}

// ErrNoBackend is why a GPU that was found cannot be used yet.
const ErrNoBackend = "fedq's CUDA training backend is not in this build (it needs a GPU to be developed and checked)"

// Select decides where to train: it returns the CPU for cpu, and for auto when no GPU is
// usable (note then says why, for one log line); cuda fails with the probe's reason.
func Select(c Choice, probe func() Report) (kind Kind, note string, err error) {
	switch c.Kind {
	case CPU:
		return CPU, "", nil
	case Auto:
		r := probe()
		if !r.Available() {
			return CPU, "no GPU: " + r.Reason + "; training on the CPU", nil
		}
		return CPU, fmt.Sprintf("found %s, but %s; training on the CPU", r.Devices[0].Name, ErrNoBackend), nil
	case CUDA:
		r := probe()
		if !r.Available() {
			return "", "", fmt.Errorf("--device %s: no usable GPU: %s (use --device cpu or auto)", c, r.Reason)
		}
		if c.Index >= len(r.Devices) {
			return "", "", fmt.Errorf("--device %s: the driver reports %d device(s)", c, len(r.Devices))
		}
		return "", "", fmt.Errorf("--device %s (%s): %s; use --device cpu or auto", c, r.Devices[c.Index].Name, ErrNoBackend)
	}
	return "", "", fmt.Errorf("device kind %q", c.Kind)
}
