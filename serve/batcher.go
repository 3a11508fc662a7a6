package serve

import (
	"sync"
	"sync/atomic"
	"time"
)

// job is one infer request's samples on their way through a batcher.
type job struct {
	x    []float32 // n × input size
	n    int
	out  []float32 // n × classes, written by the batcher before done is closed
	done chan struct{}
}

// instance is one loaded model version and the goroutine that runs it. Requests hold a
// reference (acquire/release) from before they decode their input until they have their
// answer; a retired instance takes no new references and closes its queue when the last
// one is released, so its batcher drains what was queued and stops.
type instance struct {
	model    *Model
	classes  int
	inSize   int
	maxBatch int
	maxWait  time.Duration
	observe  func(samples int) // batch-size metric

	queue chan *job
	// coming counts requests that hold a reference and have not yet been taken off the
	// queue (decoding their input, or queued): while it is zero nobody is worth waiting
	// for, and a batch closes at once.
	coming  atomic.Int64
	stopped chan struct{}

	mu      sync.Mutex
	refs    int
	retired bool
}

func newInstance(m *Model, maxBatch, maxQueue int, maxWait time.Duration, observe func(int)) *instance {
	in := &instance{model: m, classes: m.Net.Spec().Classes, inSize: m.Net.InputSize(), maxBatch: maxBatch, maxWait: maxWait,
		observe: observe, queue: make(chan *job, maxQueue), stopped: make(chan struct{})}
	go in.run()
	return in
}

// acquire takes a reference; false if the instance is retired (look up the current one).
func (in *instance) acquire() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.retired {
		return false
	}
	in.refs++
	return true
}

// release drops a reference taken by acquire.
func (in *instance) release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.refs--
	if in.retired && in.refs == 0 {
		close(in.queue)
	}
}

// retire stops the instance once the requests holding it are done; it does not wait.
func (in *instance) retire() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.retired {
		return
	}
	in.retired = true
	if in.refs == 0 {
		close(in.queue)
	}
}

// enqueue queues j without blocking; false when the queue is full. The caller holds a
// reference and has counted itself in coming.
func (in *instance) enqueue(j *job) bool {
	select {
	case in.queue <- j:
		return true
	default:
		return false
	}
}

// run is the batching goroutine: it gathers queued jobs into batches of at most maxBatch
// samples, runs one Forward per batch and hands each job its rows of the logits.
func (in *instance) run() {
	defer close(in.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		batch []*job
		carry *job // taken off the queue but did not fit the last batch
		x     []float32
	)
	for {
		first := carry
		carry = nil
		if first == nil {
			j, ok := <-in.queue
			if !ok {
				return
			}
			in.coming.Add(-1)
			first = j
		}
		batch = append(batch[:0], first)
		n := first.n
		closed := false
		if n < in.maxBatch && in.coming.Load() > 0 {
			timer.Reset(in.maxWait)
		gather:
			for n < in.maxBatch && in.coming.Load() > 0 {
				select {
				case j, ok := <-in.queue:
					if !ok {
						closed = true
						break gather
					}
					in.coming.Add(-1)
					if n+j.n > in.maxBatch {
						carry = j
						break gather
					}
					batch = append(batch, j)
					n += j.n
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
		}
		x = in.forward(batch, n, x)
		if closed {
			if carry != nil {
				in.forward([]*job{carry}, carry.n, x)
			}
			return
		}
	}
}

// forward runs one batch of n samples and answers its jobs; x is a reusable buffer.
func (in *instance) forward(batch []*job, n int, x []float32) []float32 {
	var input []float32
	if len(batch) == 1 {
		input = batch[0].x
	} else {
		if cap(x) < n*in.inSize {
			x = make([]float32, n*in.inSize)
		}
		input = x[:0]
		for _, j := range batch {
			input = append(input, j.x...)
		}
	}
	logits := in.model.Net.Forward(input, n, false)
	off := 0
	for _, j := range batch {
		k := j.n * in.classes
		j.out = append(j.out[:0], logits[off:off+k]...)
		off += k
		close(j.done)
	}
	if in.observe != nil {
		in.observe(n)
	}
	return x
}
