package cuda

import (
	"runtime"
	"strings"
	"testing"
)

// TestProbeFailures checks the loader's failure paths, which every machine without a GPU
// takes: a library that is not there, and a library that is not a CUDA driver.
func TestProbeFailures(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the probe loads libraries on Linux")
	}
	for _, tc := range []struct{ lib, want string }{
		{"/nonexistent/libcuda.so.1", "cannot be loaded (no NVIDIA driver installed?)"},
		{"libm.so.6", "has no cuInit: not a CUDA driver, or one too old"},
	} {
		r := Probe(tc.lib)
		if r.Available() || !strings.Contains(r.Reason, tc.want) || r.Library != tc.lib {
			t.Errorf("Probe(%s) = %+v, want a reason containing %q", tc.lib, r, tc.want)
		}
	}
	// This machine: either a GPU with its details, or a reason.
	r := Probe("")
	if r.Available() == (r.Reason != "") {
		t.Fatalf("Probe() = %+v: a report says why exactly when it has no device", r)
	}
	for _, d := range r.Devices {
		if d.Name == "" || d.Memory == 0 || d.Major == 0 {
			t.Errorf("device %+v", d)
		}
	}
}

func TestParseChoice(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Choice
		err  bool
	}{
		{"", Choice{Kind: Auto}, false}, {"auto", Choice{Kind: Auto}, false}, {"CPU", Choice{Kind: CPU}, false},
		{"cuda", Choice{Kind: CUDA}, false}, {"cuda:3", Choice{Kind: CUDA, Index: 3}, false},
		{"cuda:-1", Choice{}, true}, {"cuda:x", Choice{}, true}, {"tpu", Choice{}, true},
	} {
		got, err := ParseChoice(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseChoice(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

// TestSelect checks where training goes for each choice, with and without a GPU.
func TestSelect(t *testing.T) {
	none := func() Report { return Report{Library: DefaultLibrary, Reason: "libcuda.so.1 cannot be loaded"} }
	gpu := func() Report { return Report{Devices: []Device{{Name: "NVIDIA H200", Memory: 1 << 37, Major: 9}}} }
	for _, tc := range []struct {
		choice Choice
		probe  func() Report
		kind   Kind
		note   string
		err    string
	}{
		{Choice{Kind: CPU}, none, CPU, "", ""},
		{Choice{Kind: Auto}, none, CPU, "no GPU: libcuda.so.1 cannot be loaded; training on the CPU", ""},
		{Choice{Kind: Auto}, gpu, CPU, "found NVIDIA H200, but fedq's CUDA training backend is not in this build", ""},
		{Choice{Kind: CUDA}, none, "", "", "--device cuda:0: no usable GPU: libcuda.so.1 cannot be loaded (use --device cpu or auto)"},
		{Choice{Kind: CUDA, Index: 2}, gpu, "", "", "the driver reports 1 device(s)"},
		{Choice{Kind: CUDA}, gpu, "", "", "(NVIDIA H200): fedq's CUDA training backend is not in this build"},
	} {
		kind, note, err := Select(tc.choice, tc.probe)
		if kind != tc.kind || !strings.HasPrefix(note, tc.note) || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Select(%v) = %q, %q, %v", tc.choice, kind, note, err)
		}
	}
}
