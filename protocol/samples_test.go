package protocol

import (
	"bytes"
	"crypto/sha256"
	"math"
	"math/rand/v2"
	"testing"
)

// sampleMessages returns one fully populated, valid message of every type.
// Tests round-trip them, fuzz tests start from them and benchmarks use them.
func sampleMessages() []Message {
	h := Hash(sha256.Sum256([]byte("fedq")))
	k := PublicKey(sha256.Sum256([]byte("key")))
	return []Message{
		&Hello{ProtocolVersion: Version, AgentID: "agent-042", SoftwareVersion: "fedq 0.1.0",
			Capabilities: Capabilities{
				Datasets: []DatasetInfo{{Name: "mnist", Examples: 60000, Labelled: 6000, Unlabelled: 54000, Classes: 10}},
				Backend:  "cuda", Device: "NVIDIA H200", GPUs: []GPUInfo{{Name: "NVIDIA H200", MemoryBytes: 141 << 30}},
				Threads: 16, Features: []string{"secagg", "dp"}, MemoryBytes: 128 << 30,
			}},
		&Welcome{ProtocolVersion: Version, AgentID: "agent-042", SessionID: "s-1", HeartbeatIntervalMs: 5000, ServerTimeMs: 1_700_000_000_000,
			Features: []string{FeatureUndigestedUploads}},
		&EnrollRequest{Token: "tok-123", CSR: []byte{0x30, 0x82, 1, 2}, AgentName: "site-a"},
		&EnrollResponse{Certificate: []byte{0x30, 1}, CACertificate: []byte{0x30, 2}, AgentID: "agent-042"},
		&Heartbeat{Seq: 7, SentAtMs: 1_700_000_000_123, Busy: true, ActiveTasks: 1},
		&HeartbeatAck{Seq: 7, ServerTimeMs: 1_700_000_000_125},
		&Goodbye{Reason: "maintenance", Code: CodeShuttingDown, RetryAfterMs: 30000},
		&Error{Code: CodeStaleBase, Msg: "update is against version 3, round uses 4", Retryable: false},
		&TaskOffer{TaskID: "t-9", Round: 9, Kind: TaskTrain, BaseVersion: 4, BaseHash: h, Dataset: "mnist",
			Config: TrainConfig{Epochs: 1, Batch: 32, LR: 0.01, Optimizer: "momentum", Momentum: 0.9,
				WeightDecay: 1e-4, ProxMu: 0.01, Extra: map[string]string{"server_lr": "1.0"}},
			ModelSpec: []byte(`{"layers":[]}`), DeadlineMs: 1_700_000_060_000,
			SecAgg: &SecAggParams{Threshold: 5, Neighbours: 8, ModulusBits: 32, QuantRange: 8, ClipRange: 4, Participants: 10},
			DP:     &DPParams{ClipNorm: 1, NoiseMultiplier: 0.5, Mechanism: "skellam"},
			Semi:   &SemiParams{Threshold: 0.95, LambdaU: 1, Ratio: 7}},
		&TaskAccept{TaskID: "t-9", Round: 9},
		&TaskDecline{TaskID: "t-9", Round: 9, Reason: "no dataset mnist", Code: CodeUnavailable},
		&TaskCancel{TaskID: "t-9", Round: 9, Reason: "round below quorum", Code: CodeCancelled},
		&ModelRequest{Version: 4, Hash: h, TaskID: "t-9"},
		&UpdateHeader{TaskID: "t-9", Round: 9, BaseVersion: 4, BaseHash: h, Examples: 6000,
			Metrics: map[string]float64{"loss": 0.25, "accuracy": 0.93}, Masked: true},
		&UpdateAck{TaskID: "t-9", Round: 9, SHA256: h},
		&EvalRequest{TaskID: "e-1", Version: 4, Hash: h, Dataset: "mnist-test", Batch: 256, DeadlineMs: 1},
		&EvalResult{TaskID: "e-1", Examples: 10000, Metrics: map[string]float64{"accuracy": 0.97}},
		&SecAggAdvertise{Round: 9, TaskID: "t-9", EncPub: k, MaskPub: k, Signature: []byte{1, 2, 3}},
		&SecAggRoster{Round: 9, TaskID: "t-9", Peers: []SecAggPeer{{AgentID: "agent-7", EncPub: k, MaskPub: k, Signature: []byte{4}}}},
		&SecAggShares{Round: 9, TaskID: "t-9", Encrypted: map[string][]byte{"agent-7": {9, 9}}},
		&SecAggUnmaskRequest{Round: 9, TaskID: "t-9", Survivors: []string{"agent-7"}, Dropped: []string{"agent-8"}},
		&SecAggUnmaskResponse{Round: 9, TaskID: "t-9", Shares: map[string][]byte{"agent-8": {1}}},
		&TensorHeader{Tensors: []TensorInfo{{Name: "fc1.weight", DType: DTypeF32, Shape: []int{2, 3}}}, TotalBytes: 24,
			Meta: map[string]string{"version": "4"}},
		&TensorTrailer{SHA256: h},
		&AdminRequest{Method: "rounds.start", Body: []byte(`{"rounds":3}`)},
		&AdminResponse{Body: []byte(`{"ok":true}`), More: true},
	}
}

// frameBytes returns m encoded as one frame, failing the test on error.
func frameBytes(tb testing.TB, m Message) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := WriteMessage(&buf, m); err != nil {
		tb.Fatalf("WriteMessage(%s): %v", m.Type(), err)
	}
	return buf.Bytes()
}

// rawFrame builds a frame by hand, for malformed inputs.
func rawFrame(t MsgType, payload []byte) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	n := len(payload)
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return append(b, payload...)
}

// newRand returns a deterministic generator for test data.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randF32 returns n deterministic float32 values in [-1, 1).
func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

// nan returns a NaN (a function, so that vet does not object to constant
// expressions).
func nan() float64 { return math.NaN() }
