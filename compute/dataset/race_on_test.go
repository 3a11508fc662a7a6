//go:build race

package dataset

// raceEnabled reports whether the tests run under the race detector, which
// makes decompressing all of MNIST several times slower.
const raceEnabled = true
