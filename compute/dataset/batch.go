package dataset

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// golden is the 64-bit golden-ratio constant used to derive the second PCG
// seed word from the first.
const golden = 0x9e3779b97f4a7c15

// splitmix64 is the SplitMix64 finaliser, used to turn (seed, counter) pairs
// into well-mixed PCG seeds.
func splitmix64(z uint64) uint64 {
	z += golden
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRand returns a PCG-backed generator for seed, the package's one way of
// turning a user seed into a stream.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^golden))
}

// Shuffle returns a random permutation of 0..n-1 determined by seed alone.
// It returns an empty slice for n <= 0.
func Shuffle(n int, seed uint64) []int {
	if n <= 0 {
		return []int{}
	}
	return newRand(seed).Perm(n)
}

// Batcher serves a dataset in shuffled mini-batches, epoch after epoch. The
// order of epoch e depends only on the seed and e, so a run can be
// reproduced (or resumed at an epoch boundary) exactly. After construction
// Next does not allocate.
//
// A Batcher reads the dataset it was built from; do not change that
// dataset's length while the Batcher is in use. It is not safe for
// concurrent use.
type Batcher struct {
	x        []float32
	y        []int32
	ss       int // sample size
	batch    int
	dropLast bool
	seed     uint64

	order []int // permutation of the current epoch
	pos   int   // next position in order
	epoch int
	ready bool // order holds the permutation of epoch

	src *rand.PCG
	rng *rand.Rand
}

// NewBatcher returns a Batcher over d with the given batch size. If dropLast
// is set, a final batch smaller than batch is skipped; otherwise it is
// served. d must be consistent (see Dataset.Validate; the value check is
// skipped for speed) and non-empty, and with dropLast it must hold at least
// one full batch.
func NewBatcher(d *Dataset, batch int, seed uint64, dropLast bool) (*Batcher, error) {
	if d == nil {
		return nil, errors.New("new batcher: nil dataset")
	}
	if batch < 1 {
		return nil, fmt.Errorf("new batcher for %q: batch size %d, want >= 1", d.Name, batch)
	}
	ss := d.SampleSize()
	n := d.Len()
	if ss == 0 {
		return nil, fmt.Errorf("new batcher for %q: Shape %v gives no values per sample; set a shape with positive dimensions", d.Name, d.Shape)
	}
	if len(d.X) != n*ss {
		return nil, fmt.Errorf("new batcher for %q: len(X) = %d, want Len*SampleSize = %d*%d; run Validate to find the inconsistency", d.Name, len(d.X), n, ss)
	}
	if n == 0 {
		return nil, fmt.Errorf("new batcher for %q: dataset is empty", d.Name)
	}
	if dropLast && n < batch {
		return nil, fmt.Errorf("new batcher for %q: %d samples make no full batch of %d with dropLast; lower the batch size or keep the last batch", d.Name, n, batch)
	}
	src := rand.NewPCG(0, 0)
	return &Batcher{
		x:        d.X,
		y:        d.Y,
		ss:       ss,
		batch:    batch,
		dropLast: dropLast,
		seed:     seed,
		order:    make([]int, n),
		src:      src,
		rng:      rand.New(src),
	}, nil
}

// BatchSize returns the batch size the Batcher was built with.
func (b *Batcher) BatchSize() int { return b.batch }

// Epoch returns the number of completed epochs, which is also the index
// (from 0) of the epoch the next batch comes from.
func (b *Batcher) Epoch() int { return b.epoch }

// BatchesPerEpoch returns how many batches Next serves per epoch.
func (b *Batcher) BatchesPerEpoch() int {
	n := len(b.order)
	if b.dropLast {
		return n / b.batch
	}
	return (n + b.batch - 1) / b.batch
}

// Next copies the next batch into x (sample-major) and y and returns its
// size n; the batch is x[:n*SampleSize] and y[:n]. At the end of an epoch it
// returns ok = false with n = 0, and the following call starts the next
// epoch with a fresh order.
//
// x must hold at least BatchSize()*SampleSize values and y at least
// BatchSize() labels. Buffers that are too small are a programming error and
// make Next panic with a message saying the sizes needed.
func (b *Batcher) Next(x []float32, y []int32) (n int, ok bool) {
	if len(y) < b.batch || len(x) < b.batch*b.ss {
		panic(fmt.Sprintf("dataset: Batcher.Next: buffers hold %d values and %d labels, want at least %d and %d (BatchSize*SampleSize and BatchSize)", len(x), len(y), b.batch*b.ss, b.batch))
	}
	if !b.ready {
		epochOrder(b.order, b.src, b.rng, b.seed, b.epoch)
		b.pos = 0
		b.ready = true
	}
	n = min(b.batch, len(b.order)-b.pos)
	if n == 0 || (b.dropLast && n < b.batch) {
		b.epoch++
		b.ready = false
		return 0, false
	}
	ss := b.ss
	for j, i := range b.order[b.pos : b.pos+n] {
		y[j] = b.y[i]
		copy(x[j*ss:(j+1)*ss], b.x[i*ss:(i+1)*ss])
	}
	b.pos += n
	return n, true
}

// epochOrder fills order with the permutation for epoch e under seed,
// reseeding src (which backs rng) so that nothing is allocated.
func epochOrder(order []int, src *rand.PCG, rng *rand.Rand, seed uint64, e int) {
	s := splitmix64(seed ^ splitmix64(uint64(e)))
	src.Seed(s, s^golden)
	for i := range order {
		order[i] = i
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
}
