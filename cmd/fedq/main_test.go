package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fedq/fedq/privacy/dp"
)

// runCLI runs fedq in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"fedq"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// writeBlobs writes a small separable CSV dataset: two Gaussian blobs in 4 dimensions.
func writeBlobs(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("a,b,c,d,label\n")
	for range n {
		y := r.IntN(2)
		c := float64(2*y - 1)
		fmt.Fprintf(&b, "%.4f,%.4f,%.4f,%.4f,%d\n", c+r.NormFloat64()*0.5, -c+r.NormFloat64()*0.5, r.NormFloat64(), c+r.NormFloat64()*0.5, y)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTrainCSVJSON(t *testing.T) {
	dir := t.TempDir()
	train, test := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	writeBlobs(t, train, 400, 1)
	writeBlobs(t, test, 200, 2)
	spec := `{"input":[4],"classes":2,"layers":[{"type":"dense","out":8},{"type":"relu"},{"type":"dense","out":2}]}`
	out := filepath.Join(dir, "m.safetensors")
	code, stdout, stderr := runCLI(t, "train", "--model", spec, "--dataset", train, "--label-column", "label", "--test", test,
		"--epochs", "3", "--batch", "8", "--lr", "0.1", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	for _, k := range []string{"test_accuracy", "samples_per_sec", "train_loss", "params", "out"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("--json output lacks %q: %s", k, stdout)
		}
	}
	if acc := rep["test_accuracy"].(float64); acc < 0.9 {
		t.Errorf("test accuracy on separable blobs = %v, want ≥ 0.9", acc)
	}
	code, stdout, stderr = runCLI(t, "eval", "--model", out, "--dataset", train, "--label-column", "label", "--test", test, "--json")
	if code != 0 || !strings.Contains(stdout, `"test_accuracy"`) {
		t.Fatalf("eval: exit %d: %s %s", code, stdout, stderr)
	}
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("1,2,0\n3,x,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--model", "resnet"}, 2, "neither a builtin"},
		{[]string{"train", "--model", `{"input":[4],"classes":2,"layers":[{"type":"conv9"}]}`}, 2, `unknown type "conv9"`},
		{[]string{"train", "--epochs", "0"}, 2, "--epochs and --batch"},
		{[]string{"train", "--optimizer", "lbfgs", "--dataset", bad}, 2, "--optimizer"},
		{[]string{"train", "--lr", "-1", "--dataset", bad}, 2, "learning rate must be positive"},
		{[]string{"train", "--dataset", bad}, 1, `"x" is not a number`},
		{[]string{"train", "--dataset", filepath.Join(dir, "missing.csv")}, 1, "missing.csv"},
		{[]string{"train", "--dataset", "cifar"}, 2, "want mnist or a .csv file"},
		{[]string{"train", "--threads", "0"}, 2, "--threads"},
		{[]string{"eval", "--model", filepath.Join(dir, "none.safetensors")}, 1, "none.safetensors"},
		{[]string{"--log-level", "loud", "info"}, 2, "--log-level"},
		{[]string{"train", "extra-arg"}, 2, "takes no arguments"},
		{[]string{"bench", "train", "--batch", "0"}, 2, "must be positive"},
		{[]string{"dp", "epsilon", "--sample-rate", "2", "--noise-multiplier", "1", "--steps", "3"}, 2, "sample rate 2 must be in [0, 1]"},
		{[]string{"dp", "epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "3", "--orders", "2,0.5"}, 2, `--orders: "0.5"`},
		{[]string{"dp", "noise", "--target-epsilon", "0", "--sample-rate", "0.1", "--steps", "3"}, 2, "target ε 0 must be positive"},
		{[]string{"sim", "--strategy", "fedadam:beta1=2"}, 2, "beta1 = 2 must be in [0, 1)"},
		{[]string{"dp", "epsilon", "--sampling", "uniform", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "3"}, 2, `--sampling "uniform"`},
		{[]string{"dp", "noise", "--sampling", "fixed", "--target-epsilon", "1", "--sample-rate", "1.5", "--steps", "3"}, 2, "sampling fraction 1.5 must be in [0, 1]"},
		{[]string{"sim", "--dp-clip", "1", "--dp-epsilon", "1", "--dp-sampling", "uniform"}, 2, `--dp-sampling "uniform"`},
		{[]string{"sim", "--train-deadline", "0s"}, 2, "--train-deadline 0s: want a positive duration"},
		{[]string{"sim", "--agents", "0"}, 2, "--agents 0: want at least 1"},
		{[]string{"sim", "--fraction", "1.5"}, 2, "--fraction 1.5: want the share of agents"},
		{[]string{"sim", "--partition", "dirichlet:0"}, 2, `partition "dirichlet:0": want dirichlet:ALPHA with ALPHA > 0`},
		{[]string{"sim", "--model", "resnet"}, 2, `model "resnet" is neither a builtin`},
		{[]string{"serve", "--model", "m.safetensors", "--workers", "-1"}, 2, "--workers must not be negative"},
		{[]string{"serve", "--model", "m.safetensors", "--max-batch", "0"}, 2, "--max-batch, --max-queue and --max-body must be positive"},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, c.args...)
		if c.args[0] == "sim" && stdout != "" {
			t.Errorf("fedq %v printed %q before refusing", c.args, stdout)
		}
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("fedq %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

func TestInfoJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "info", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(stdout), &in); err != nil {
		t.Fatal(err)
	}
	if ks, _ := in["kernels"].([]any); len(ks) == 0 {
		t.Fatalf("no kernels in %s", stdout)
	}
}

// dpEpsilon and dpNoise are what fedq dp epsilon and fedq dp noise print with --json.
type (
	dpEpsilon struct{ Epsilon, Order float64 }
	dpNoise   struct {
		NoiseMultiplier float64 `json:"noise_multiplier"`
		Epsilon         float64
	}
)

// runJSON runs a command that must succeed and decodes its --json output into v.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v: %v in %q", args, err, out)
	}
}

// TestDPCommands checks fedq dp's JSON against the accountant's published test value and
// the calibration against the accountant.
func TestDPCommands(t *testing.T) {
	var e dpEpsilon
	runJSON(t, &e, "dp", "epsilon", "--sample-rate", "0.04", "--noise-multiplier", "1.5", "--steps", "2250", "--json")
	if math.Abs(e.Epsilon-7.32911117143)/7.32911117143 > 1e-9 || e.Order != 3.9 {
		t.Fatalf("epsilon %+v", e)
	}
	var n dpNoise
	runJSON(t, &n, "dp", "noise", "--target-epsilon", "3", "--sample-rate", "0.0025", "--steps", "6000", "--json")
	if !(n.NoiseMultiplier > 0.5 && n.NoiseMultiplier < 1) || n.Epsilon > 3 || n.Epsilon < 2.99 {
		t.Fatalf("noise %+v", n)
	}
}

// TestDPFixedSampling checks fedq dp --sampling fixed against the without-replacement
// accountant at half the noise multiplier (replace-one doubles a clipped sum's
// sensitivity), and that the default is still Poisson.
func TestDPFixedSampling(t *testing.T) {
	var e dpEpsilon
	runJSON(t, &e, "dp", "epsilon", "--sampling", "fixed", "--sample-rate", "0.1", "--noise-multiplier", "3", "--steps", "50", "--json")
	orders := dp.DefaultOrders()
	rdp, _ := dp.RDPWithoutReplacement(0.1, 1.5, 50, orders)
	want, order, _ := dp.Epsilon(orders, rdp, 1e-5)
	if e.Epsilon != want || e.Order != order {
		t.Fatalf("fixed: %+v, want ε %v at order %v", e, want, order)
	}
	var n dpNoise
	runJSON(t, &n, "dp", "noise", "--sampling", "fixed", "--target-epsilon", "4", "--sample-rate", "0.1", "--steps", "50", "--json")
	z, _ := dp.ClippedSumNoiseMultiplier(dp.Fixed, 4, 0.1, 50, 1e-5, nil)
	poisson, _ := dp.NoiseMultiplier(4, 0.1, 50, 1e-5, nil)
	if n.NoiseMultiplier != z || n.Epsilon > 4 || n.Epsilon < 3.99 || !(z > poisson) {
		t.Fatalf("fixed noise %+v, accountant %v, Poisson %v", n, z, poisson)
	}
}

func TestSecAggGraphCommand(t *testing.T) {
	code, out, stderr := runCLI(t, "secagg", "graph", "--agents", "100", "--dropout", "0.1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var g struct {
		Agents, Neighbours, Threshold int
		Failure                       float64
		Complete                      bool
	}
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	if g.Agents != 100 || g.Neighbours != 34 || g.Threshold != 18 || g.Complete || !(g.Failure > 0 && g.Failure <= 1e-6) {
		t.Fatalf("graph %+v", g)
	}
	if code, _, stderr := runCLI(t, "secagg", "graph", "--agents", "2"); code == 0 || !strings.Contains(stderr, "at least 3") {
		t.Fatalf("2 agents: exit %d, %s", code, stderr)
	}
}

// TestDeviceSelection checks --device on a machine without a usable GPU (the driver
// library is pointed at a path that does not exist): auto trains on the CPU, cuda fails
// with the reason, and fedq info says why.
func TestDeviceSelection(t *testing.T) {
	t.Setenv("FEDQ_CUDA_LIBRARY", "/nonexistent/libcuda.so.1")
	csv := filepath.Join(t.TempDir(), "blobs.csv")
	writeBlobs(t, csv, 40, 3)
	spec := `{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]}`
	if code, _, stderr := runCLI(t, "train", "--model", spec, "--dataset", csv, "--label-column", "label", "--epochs", "1", "--batch", "4", "--device", "auto"); code != 0 {
		t.Fatalf("--device auto: exit %d: %s", code, stderr)
	}
	code, _, stderr := runCLI(t, "train", "--model", spec, "--dataset", csv, "--label-column", "label", "--epochs", "1", "--batch", "4", "--device", "cuda")
	if code != 2 || !strings.Contains(stderr, "--device cuda:0: no usable GPU: /nonexistent/libcuda.so.1 cannot be loaded") {
		t.Fatalf("--device cuda: exit %d, stderr %q", code, stderr)
	}
	code, out, _ := runCLI(t, "info", "--json")
	var in struct {
		CUDA struct {
			Reason string `json:"reason"`
		} `json:"cuda"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &in) != nil || !strings.Contains(in.CUDA.Reason, "cannot be loaded") {
		t.Fatalf("info: exit %d, %s", code, out)
	}
}

// TestSimJSONProgress runs a one-round federation with --json: stdout is exactly one JSON
// object with the result, and the line per round goes to stderr.
func TestSimJSONProgress(t *testing.T) {
	code, stdout, stderr := runCLI(t, "sim", "--agents", "2", "--fraction", "1", "--rounds", "1", "--batch", "50",
		"--model", `{"input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},{"type":"dense","out":10}]}`, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		FinalAccuracy float64           `json:"final_accuracy"`
		Rounds        []json.RawMessage `json:"rounds"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&res); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON object (%v): %q", err, stdout)
	}
	if len(res.Rounds) != 1 || !(res.FinalAccuracy > 0.5) {
		t.Errorf("result: %d rounds, accuracy %v", len(res.Rounds), res.FinalAccuracy)
	}
	if !strings.Contains(stderr, "round    1  accuracy") {
		t.Errorf("stderr has no progress line: %q", stderr)
	}
}

func TestStatCPUTicks(t *testing.T) {
	// Fields 14 and 15 (utime, stime) of /proc/PID/stat, after a command name holding
	// spaces and parentheses.
	tail := " S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0 100"
	tests := []struct {
		line string
		want int64
		ok   bool
	}{
		{"42 (fedq)" + tail, 325, true},
		{"42 (a (b) c)" + tail, 325, true},
		{"42 (fedq) S 1 2", 0, false},
		{"no parenthesis", 0, false},
		{"42 (fedq) S 1 2 3 4 5 6 7 8 9 10 x 75", 0, false},
	}
	for _, tc := range tests {
		got, err := statCPUTicks(tc.line)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("statCPUTicks(%q) = %d, %v; want %d, ok %v", tc.line, got, err, tc.want, tc.ok)
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	before, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A busy loop must show up as CPU time (a few ticks), however loaded the host.
	for deadline := time.Now().Add(20 * time.Second); ; {
		after, err := cpuSeconds(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 0.05 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time grew by %.3f s in 20 s of busy loop, want ≥ 0.05", after-before)
		}
		for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
		}
	}
}
