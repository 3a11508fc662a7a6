package serve

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedq/fedq/compute"
)

// job is one infer request's samples on their way through a batcher.
type job struct {
	x    []float32 // n × input size
	n    int
	out  []float32 // n × classes, written by the batcher before done is closed
	done chan struct{}
}

// instance is one loaded model version and the goroutines that run it: one worker per
// replica of its network (compute.Model.Replica), so that forward passes of successive
// batches run on several cores. One worker at a time gathers a batch off the queue — the
// batching is the same as with a single worker — then runs it while the next worker
// gathers. Requests hold a reference (acquire/release) from before they decode their
// input until they have their answer; a retired instance takes no new references and
// closes its queue when the last one is released, so its workers drain what was queued
// and stop.
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

	// gather is held by the worker gathering a batch; it guards carry and drained.
	gather  sync.Mutex
	carry   *job // taken off the queue but did not fit the last batch
	drained bool // the queue is closed and empty: workers stop

	mu      sync.Mutex
	refs    int
	retired bool
}

// newInstance starts len(nets) workers for m: nets[0] is m.Net, the rest its replicas.
func newInstance(m *Model, nets []*compute.Model[float32], maxBatch, maxQueue int, maxWait time.Duration, observe func(int)) *instance {
	in := &instance{model: m, classes: m.Net.Spec().Classes, inSize: m.Net.InputSize(), maxBatch: maxBatch, maxWait: maxWait,
		observe: observe, queue: make(chan *job, maxQueue), stopped: make(chan struct{})}
	var wg sync.WaitGroup
	for _, net := range nets {
		wg.Go(func() { in.work(net) })
	}
	go func() {
		wg.Wait()
		close(in.stopped)
	}()
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

// work is one worker: it gathers a batch (holding gather), then runs it on net and
// answers its jobs, until the queue is closed and drained.
func (in *instance) work(net *compute.Model[float32]) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		batch []*job
		x     []float32
	)
	for {
		// Let the requests this worker just answered write their responses before it
		// takes the next batch: a worker that went straight on to the next forward pass
		// kept them from running on a busy machine, which cost both latency and the
		// requests that would have joined the next batch (BENCHMARKS.md).
		runtime.Gosched()
		in.gather.Lock()
		batch = in.gatherBatch(batch[:0], timer)
		in.gather.Unlock()
		if len(batch) == 0 {
			return
		}
		x = in.forward(net, batch, x)
	}
}

// gatherBatch collects the next batch of at most maxBatch samples: the job carried over
// from the last batch or the next one queued, then, while requests are on their way
// (coming > 0), more of them for up to maxWait. Empty once the queue is closed and
// drained. The caller holds gather.
func (in *instance) gatherBatch(batch []*job, timer *time.Timer) []*job {
	first := in.carry
	in.carry = nil
	if first == nil {
		if in.drained {
			return batch
		}
		j, ok := <-in.queue
		if !ok {
			in.drained = true
			return batch
		}
		in.coming.Add(-1)
		first = j
	}
	batch = append(batch, first)
	n := first.n
	if n >= in.maxBatch || in.coming.Load() == 0 || in.drained {
		return batch
	}
	timer.Reset(in.maxWait)
	defer timer.Stop()
	for n < in.maxBatch && in.coming.Load() > 0 {
		select {
		case j, ok := <-in.queue:
			if !ok {
				in.drained = true
				return batch
			}
			in.coming.Add(-1)
			if n+j.n > in.maxBatch {
				in.carry = j
				return batch
			}
			batch = append(batch, j)
			n += j.n
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// forward runs one batch on net and answers its jobs; x is a reusable buffer.
func (in *instance) forward(net *compute.Model[float32], batch []*job, x []float32) []float32 {
	n := 0
	for _, j := range batch {
		n += j.n
	}
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
	logits := net.Forward(input, n, false)
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
