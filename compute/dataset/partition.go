package dataset

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// DirichletMaxTries is how many times PartitionDirichlet redraws the class
// proportions when some client ends up with no example.
const DirichletMaxTries = 100

// PartitionIID deals n examples to clients at random: it shuffles 0..n-1
// with seed and cuts the result into clients parts whose sizes differ by at
// most one (the first n%clients clients get the extra example). Each part is
// sorted ascending.
func PartitionIID(n, clients int, seed uint64) ([][]int, error) {
	if err := checkClients(n, clients); err != nil {
		return nil, fmt.Errorf("partition IID: %w", err)
	}
	perm := newRand(seed).Perm(n)
	parts := make([][]int, clients)
	base, extra := n/clients, n%clients
	start := 0
	for c := range parts {
		size := base
		if c < extra {
			size++
		}
		parts[c] = perm[start : start+size : start+size]
		slices.Sort(parts[c])
		start += size
	}
	return parts, nil
}

// PartitionDirichlet splits examples by label in the way of Hsu et al. (2019)
// as implemented by Flower: for each class it draws client proportions
// p ~ Dir(alpha, ..., alpha), shuffles that class's indices and cuts them at
// floor(cumsum(p)*count). Small alpha gives each client few classes; large
// alpha approaches an IID split. If some client receives no example the
// whole draw is repeated, up to DirichletMaxTries times, then it fails.
//
// Every label must lie in [0, numClasses); drop Unlabelled examples first.
// Each part is sorted ascending.
func PartitionDirichlet(labels []int32, numClasses, clients int, alpha float64, seed uint64) ([][]int, error) {
	if err := checkClients(len(labels), clients); err != nil {
		return nil, fmt.Errorf("partition Dirichlet: %w", err)
	}
	if numClasses < 1 {
		return nil, fmt.Errorf("partition Dirichlet: numClasses = %d, want >= 1", numClasses)
	}
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("partition Dirichlet: alpha = %v, want a finite value > 0 (e.g. 0.1 for strongly non-IID, 100 for nearly IID)", alpha)
	}
	if err := checkLabels(labels, numClasses); err != nil {
		return nil, fmt.Errorf("partition Dirichlet: %w", err)
	}

	// Only classes that occur need a bucket; numClasses may be generous.
	byClass := make([][]int, int(slices.Max(labels))+1)
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
	}
	rng := newRand(seed)
	p := make([]float64, clients)
	logs := make([]float64, clients)
	parts := make([][]int, clients)
	for range DirichletMaxTries {
		for c := range parts {
			parts[c] = parts[c][:0]
		}
		for _, idx := range byClass {
			if len(idx) == 0 {
				continue
			}
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			dirichlet(rng, alpha, p, logs)
			cum, start := 0.0, 0
			for c := range parts {
				end := len(idx)
				if c < clients-1 {
					cum += p[c]
					end = min(len(idx), max(start, int(cum*float64(len(idx)))))
				}
				parts[c] = append(parts[c], idx[start:end]...)
				start = end
			}
		}
		if slices.IndexFunc(parts, func(s []int) bool { return len(s) == 0 }) < 0 {
			for _, s := range parts {
				slices.Sort(s)
			}
			return parts, nil
		}
	}
	return nil, fmt.Errorf("partition Dirichlet: some client got no example in each of %d draws (alpha %v, %d clients, %d examples); raise alpha, use fewer clients or more data", DirichletMaxTries, alpha, clients, len(labels))
}

// PartitionShards is the pathological non-IID split of McMahan et al. (2017):
// indices are sorted by label (stably, so ties keep index order), cut into
// clients*shardsPerClient shards of n/(clients*shardsPerClient) examples each,
// and the shuffled shards are dealt shardsPerClient to each client.
//
// When n is not a multiple of the shard count, the remainder — the last
// n%(clients*shardsPerClient) indices in label order — is assigned to no
// client. With MNIST's 60000 training examples, 100 clients and 2 shards each
// there are 200 shards of 300 and nothing is dropped. Labels must be
// non-negative (drop Unlabelled examples first). Each part is sorted
// ascending.
func PartitionShards(labels []int32, clients, shardsPerClient int, seed uint64) ([][]int, error) {
	n := len(labels)
	if err := checkClients(n, clients); err != nil {
		return nil, fmt.Errorf("partition shards: %w", err)
	}
	if shardsPerClient < 1 {
		return nil, fmt.Errorf("partition shards: %d shards per client, want >= 1", shardsPerClient)
	}
	if shardsPerClient > n/clients {
		return nil, fmt.Errorf("partition shards: %d clients x %d shards exceed the %d examples (a shard needs at least one); use fewer clients or shards", clients, shardsPerClient, n)
	}
	if err := checkLabels(labels, math.MaxInt32); err != nil {
		return nil, fmt.Errorf("partition shards: %w", err)
	}
	numShards := clients * shardsPerClient
	shardSize := n / numShards

	sorted := make([]int, n)
	for i := range sorted {
		sorted[i] = i
	}
	slices.SortStableFunc(sorted, func(a, b int) int { return cmp.Compare(labels[a], labels[b]) })

	shards := newRand(seed).Perm(numShards)
	parts := make([][]int, clients)
	for c := range parts {
		part := make([]int, 0, shardsPerClient*shardSize)
		for _, s := range shards[c*shardsPerClient : (c+1)*shardsPerClient] {
			part = append(part, sorted[s*shardSize:(s+1)*shardSize]...)
		}
		slices.Sort(part)
		parts[c] = part
	}
	return parts, nil
}

// checkClients validates a client count against the number of examples.
func checkClients(n, clients int) error {
	switch {
	case n < 1:
		return fmt.Errorf("no examples to partition (n = %d)", n)
	case clients < 1:
		return fmt.Errorf("%d clients, want >= 1", clients)
	case clients > n:
		return fmt.Errorf("%d clients but only %d examples; every client needs at least one, so use fewer clients", clients, n)
	}
	return nil
}

// checkLabels requires every label to lie in [0, numClasses).
func checkLabels(labels []int32, numClasses int) error {
	for i, y := range labels {
		if y < 0 || int(y) >= numClasses {
			if y == Unlabelled {
				return fmt.Errorf("example %d is Unlabelled; partition only labelled examples (filter them, then map indices back)", i)
			}
			return fmt.Errorf("example %d has label %d, want 0..%d", i, y, numClasses-1)
		}
	}
	return nil
}

// dirichlet draws p ~ Dir(alpha, ..., alpha) into p, using logs as scratch.
// It normalises Gamma(alpha) draws in log space, so tiny alphas, whose
// draws underflow float64, still give a valid distribution.
func dirichlet(rng *rand.Rand, alpha float64, p, logs []float64) {
	hi := math.Inf(-1)
	for i := range logs {
		logs[i] = logGamma(rng, alpha)
		hi = max(hi, logs[i])
	}
	sum := 0.0
	for i, l := range logs {
		p[i] = math.Exp(l - hi)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
}

// logGamma returns the logarithm of a Gamma(shape, 1) draw, by Marsaglia and
// Tsang (2000). For shape < 1 it draws Gamma(shape+1) and multiplies by
// U^(1/shape) (their boost), added here as log(U)/shape to avoid underflow.
func logGamma(rng *rand.Rand, shape float64) float64 {
	boost := 0.0
	if shape < 1 {
		boost = math.Log(1-rng.Float64()) / shape // 1-U lies in (0, 1]
		shape++
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := 1 - rng.Float64()
		x2 := x * x
		if u < 1-0.0331*x2*x2 || math.Log(u) < 0.5*x2+d*(1-v+math.Log(v)) {
			return math.Log(d*v) + boost
		}
	}
}
