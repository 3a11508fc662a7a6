package protocol

import (
	"fmt"
	"slices"
)

// ---- session -------------------------------------------------------------

// Hello opens an agent's session.
//
// Direction: agent → coordinator. When: first frame on the control stream
// (the first bidirectional stream the agent opens on a connection that
// presented an agent certificate). The coordinator answers [Welcome], or
// [Error] and closes the connection.
type Hello struct {
	// ProtocolVersion is the highest version the agent speaks
	// ([Version]).
	ProtocolVersion uint32 `cbor:"1,keyasint,omitempty"`
	// AgentID is the agent's own idea of its ID, for logs only: the
	// coordinator identifies the agent by its certificate.
	AgentID string `cbor:"2,keyasint,omitempty"`
	// SoftwareVersion is the agent build's version string.
	SoftwareVersion string `cbor:"3,keyasint,omitempty"`
	// Capabilities describes what the agent can train on and with.
	Capabilities Capabilities `cbor:"4,keyasint,omitempty"`
	// MinProtocolVersion is the lowest version the agent speaks (0: the
	// same as ProtocolVersion).
	MinProtocolVersion uint32 `cbor:"5,keyasint,omitempty"`
}

// Capabilities describes an agent's data and hardware; the coordinator
// uses it to select agents for a round.
type Capabilities struct {
	// Datasets are the local datasets the agent can train and evaluate on.
	Datasets []DatasetInfo `cbor:"1,keyasint,omitempty" json:"datasets,omitempty"`
	// Backend is the compute backend in use: "cpu" or "cuda".
	Backend string `cbor:"2,keyasint,omitempty" json:"backend,omitempty"`
	// Device is a human-readable description of the compute device.
	Device string `cbor:"3,keyasint,omitempty" json:"device,omitempty"`
	// GPUs lists the GPUs the agent may use.
	GPUs []GPUInfo `cbor:"4,keyasint,omitempty" json:"gpus,omitempty"`
	// Threads is the number of CPU threads the agent may use.
	Threads uint32 `cbor:"5,keyasint,omitempty" json:"threads,omitempty"`
	// Features lists optional protocol features the agent implements, e.g.
	// "secagg", "dp", "eval".
	Features []string `cbor:"6,keyasint,omitempty" json:"features,omitempty"`
	// MemoryBytes is the host memory available to the agent.
	MemoryBytes uint64 `cbor:"7,keyasint,omitempty" json:"memory_bytes,omitempty"`
}

// DatasetInfo describes one local dataset.
type DatasetInfo struct {
	// Name is the dataset's name, as task offers refer to it.
	Name string `cbor:"1,keyasint,omitempty" json:"name,omitempty"`
	// Examples is the number of examples.
	Examples uint64 `cbor:"2,keyasint,omitempty" json:"examples,omitempty"`
	// Labelled is how many examples carry a label.
	Labelled uint64 `cbor:"3,keyasint,omitempty" json:"labelled,omitempty"`
	// Unlabelled is how many examples carry no label (semi-supervised).
	Unlabelled uint64 `cbor:"4,keyasint,omitempty" json:"unlabelled,omitempty"`
	// Classes is the number of label classes (0 if not a classification
	// dataset).
	Classes uint32 `cbor:"5,keyasint,omitempty" json:"classes,omitempty"`
}

// GPUInfo describes one GPU.
type GPUInfo struct {
	// Name is the device name, e.g. "NVIDIA H200".
	Name string `cbor:"1,keyasint,omitempty" json:"name,omitempty"`
	// MemoryBytes is the device memory.
	MemoryBytes uint64 `cbor:"2,keyasint,omitempty" json:"memory_bytes,omitempty"`
}

// Type implements [Message].
func (*Hello) Type() MsgType { return MsgHello }

// Validate checks field ranges; see [Message].
func (m *Hello) Validate() error {
	if m.ProtocolVersion < 1 {
		return fmt.Errorf("Hello.ProtocolVersion is %d; it must be >= 1", m.ProtocolVersion)
	}
	c := &m.Capabilities
	if err := firstErr(
		checkLen("Hello.AgentID", m.AgentID, MaxIDLen),
		checkLen("Hello.SoftwareVersion", m.SoftwareVersion, MaxShortStringLen),
		checkCount("Hello.Capabilities.Datasets", len(c.Datasets), MaxDatasets),
		checkLen("Hello.Capabilities.Backend", c.Backend, MaxShortStringLen),
		checkLen("Hello.Capabilities.Device", c.Device, MaxShortStringLen),
		checkCount("Hello.Capabilities.GPUs", len(c.GPUs), MaxGPUs),
		checkStrings("Hello.Capabilities.Features", c.Features, MaxFeatures, MaxNameLen),
	); err != nil {
		return err
	}
	for i, d := range c.Datasets {
		f := fmt.Sprintf("Hello.Capabilities.Datasets[%d]", i)
		if err := checkRequired(f+".Name", d.Name, MaxNameLen); err != nil {
			return err
		}
		if d.Labelled > d.Examples || d.Unlabelled > d.Examples {
			return fmt.Errorf("%s has %d labelled and %d unlabelled of %d examples; neither may exceed Examples",
				f, d.Labelled, d.Unlabelled, d.Examples)
		}
	}
	for i, g := range c.GPUs {
		if err := checkLen(fmt.Sprintf("Hello.Capabilities.GPUs[%d].Name", i), g.Name, MaxShortStringLen); err != nil {
			return err
		}
	}
	return nil
}

// Welcome accepts an agent's session.
//
// Direction: coordinator → agent. When: in reply to [Hello], on the
// control stream. Until the agent has read Welcome it must not consider
// itself connected (TLS 1.3 lets a dial succeed before the server has
// checked the client certificate).
type Welcome struct {
	// ProtocolVersion is the version both sides speak from now on, chosen
	// by the coordinator with [NegotiateVersion].
	ProtocolVersion uint32 `cbor:"1,keyasint,omitempty"`
	// AgentID is the agent's ID as registered (from its certificate).
	AgentID string `cbor:"2,keyasint,omitempty"`
	// SessionID names this connection in logs on both sides.
	SessionID string `cbor:"3,keyasint,omitempty"`
	// HeartbeatIntervalMs is how often the agent must send [Heartbeat].
	HeartbeatIntervalMs uint32 `cbor:"4,keyasint,omitempty"`
	// ServerTimeMs is the coordinator's clock (Unix milliseconds), so the
	// agent can correct deadlines for clock skew.
	ServerTimeMs int64 `cbor:"5,keyasint,omitempty"`
	// Features lists the optional behaviours the coordinator accepts (such
	// as [FeatureUndigestedUploads]); an agent ignores names it does not know.
	Features []string `cbor:"6,keyasint,omitempty"`
}

// FeatureUndigestedUploads, in [Welcome.Features], says the coordinator
// accepts update uploads whose tensor stream has [DigestNone].
const FeatureUndigestedUploads = "undigested-uploads"

// maxFeatures bounds Welcome.Features, and maxFeatureLen each name.
const (
	maxFeatures   = 64
	maxFeatureLen = 64
)

// HasFeature reports whether the coordinator offered feature f.
func (m *Welcome) HasFeature(f string) bool { return slices.Contains(m.Features, f) }

// Type implements [Message].
func (*Welcome) Type() MsgType { return MsgWelcome }

// Validate checks field ranges; see [Message].
func (m *Welcome) Validate() error {
	if m.ProtocolVersion < 1 {
		return fmt.Errorf("Welcome.ProtocolVersion is %d; it must be >= 1", m.ProtocolVersion)
	}
	if m.HeartbeatIntervalMs < 100 || m.HeartbeatIntervalMs > 3_600_000 {
		return fmt.Errorf("Welcome.HeartbeatIntervalMs is %d; it must be within [100, 3600000]", m.HeartbeatIntervalMs)
	}
	if err := checkCount("Welcome.Features", len(m.Features), maxFeatures); err != nil {
		return err
	}
	for i, f := range m.Features {
		if err := checkRequired(fmt.Sprintf("Welcome.Features[%d]", i), f, maxFeatureLen); err != nil {
			return err
		}
	}
	return firstErr(
		checkRequired("Welcome.AgentID", m.AgentID, MaxIDLen),
		checkLen("Welcome.SessionID", m.SessionID, MaxIDLen),
	)
}

// EnrollRequest asks for an agent certificate with a one-time token.
//
// Direction: agent → coordinator. When: first frame on the first stream of
// a connection made without a client certificate. The coordinator answers
// [EnrollResponse] or [Error] (CodeTokenInvalid, CodeTokenExpired,
// CodeTokenUsed); the agent then closes the connection and dials again with
// its new certificate.
type EnrollRequest struct {
	// Token is the one-time enrollment token issued by `fedq ca`.
	Token string `cbor:"1,keyasint,omitempty"`
	// CSR is a PKCS#10 certificate signing request, DER-encoded, for the
	// key the agent generated and keeps.
	CSR []byte `cbor:"2,keyasint,omitempty"`
	// AgentName is the name the agent asks to be registered under; the
	// coordinator may override it.
	AgentName string `cbor:"3,keyasint,omitempty"`
}

// Type implements [Message].
func (*EnrollRequest) Type() MsgType { return MsgEnrollRequest }

// Validate checks field ranges; see [Message].
func (m *EnrollRequest) Validate() error {
	return firstErr(
		checkRequired("EnrollRequest.Token", m.Token, MaxTokenLen),
		checkRequired("EnrollRequest.CSR", m.CSR, MaxCertLen),
		checkLen("EnrollRequest.AgentName", m.AgentName, MaxIDLen),
	)
}

// EnrollResponse delivers an enrolled agent's certificate.
//
// Direction: coordinator → agent. When: in reply to a successful
// [EnrollRequest].
type EnrollResponse struct {
	// Certificate is the agent's certificate, DER-encoded.
	Certificate []byte `cbor:"1,keyasint,omitempty"`
	// CACertificate is the coordinator CA's certificate, DER-encoded; the
	// agent trusts it for all later connections.
	CACertificate []byte `cbor:"2,keyasint,omitempty"`
	// AgentID is the ID the agent is registered under (its certificate's
	// subject).
	AgentID string `cbor:"3,keyasint,omitempty"`
	// SigningKey is the coordinator's Ed25519 public key (32 bytes) that signs
	// model versions; the agent verifies every model it trains on against it.
	SigningKey []byte `cbor:"4,keyasint,omitempty"`
}

// Type implements [Message].
func (*EnrollResponse) Type() MsgType { return MsgEnrollResponse }

// Validate checks field ranges; see [Message].
func (m *EnrollResponse) Validate() error {
	return firstErr(
		checkRequired("EnrollResponse.Certificate", m.Certificate, MaxCertLen),
		checkRequired("EnrollResponse.CACertificate", m.CACertificate, MaxCertLen),
		checkRequired("EnrollResponse.AgentID", m.AgentID, MaxIDLen),
		checkLen("EnrollResponse.SigningKey", m.SigningKey, MaxSignatureLen),
	)
}

// Heartbeat tells the coordinator the agent is alive.
//
// Direction: agent → coordinator. When: on the control stream every
// Welcome.HeartbeatIntervalMs. The coordinator answers [HeartbeatAck]; it
// considers an agent gone after three missed intervals.
type Heartbeat struct {
	// Seq increases by one with each heartbeat of a session, from 1.
	Seq uint64 `cbor:"1,keyasint,omitempty"`
	// SentAtMs is the agent's clock at sending (Unix milliseconds).
	SentAtMs int64 `cbor:"2,keyasint,omitempty"`
	// Busy says the agent is running a task now.
	Busy bool `cbor:"3,keyasint,omitempty"`
	// ActiveTasks is the number of tasks the agent is running.
	ActiveTasks uint32 `cbor:"4,keyasint,omitempty"`
}

// Type implements [Message].
func (*Heartbeat) Type() MsgType { return MsgHeartbeat }

// Validate checks field ranges; see [Message].
func (m *Heartbeat) Validate() error {
	if m.Seq == 0 {
		return fmt.Errorf("Heartbeat.Seq is 0; sequence numbers start at 1")
	}
	return nil
}

// HeartbeatAck acknowledges a [Heartbeat].
//
// Direction: coordinator → agent. When: on the control stream, in reply to
// each Heartbeat. The agent measures round-trip time and clock offset from
// it.
type HeartbeatAck struct {
	// Seq is the acknowledged Heartbeat's Seq.
	Seq uint64 `cbor:"1,keyasint,omitempty"`
	// ServerTimeMs is the coordinator's clock (Unix milliseconds).
	ServerTimeMs int64 `cbor:"2,keyasint,omitempty"`
}

// Type implements [Message].
func (*HeartbeatAck) Type() MsgType { return MsgHeartbeatAck }

// Validate checks field ranges; see [Message].
func (m *HeartbeatAck) Validate() error {
	if m.Seq == 0 {
		return fmt.Errorf("HeartbeatAck.Seq is 0; sequence numbers start at 1")
	}
	return nil
}

// Goodbye announces an orderly end of the session.
//
// Direction: either. When: last frame on the control stream before the
// sender closes the connection (with QUIC application error
// Code.AppErrorCode()). The receiver should not reconnect before
// RetryAfterMs.
type Goodbye struct {
	// Reason is human-readable.
	Reason string `cbor:"1,keyasint,omitempty"`
	// Code is CodeNone for a normal shutdown, else why the session ends
	// (e.g. CodeShuttingDown, CodeRevoked, CodeSessionReplaced).
	Code ErrorCode `cbor:"2,keyasint,omitempty"`
	// RetryAfterMs is how long to wait before reconnecting (0: the
	// receiver's own backoff).
	RetryAfterMs uint32 `cbor:"3,keyasint,omitempty"`
}

// Type implements [Message].
func (*Goodbye) Type() MsgType { return MsgGoodbye }

// Validate checks field ranges; see [Message].
func (m *Goodbye) Validate() error {
	return checkLen("Goodbye.Reason", m.Reason, MaxErrorMessageLen)
}

// ---- tasks and models ------------------------------------------------------

// TaskKind says what a task asks the agent to do.
type TaskKind string

// Task kinds. An agent that receives a kind it does not know declines the
// task with CodeUnavailable.
const (
	// TaskTrain: train from the base model on the dataset and upload an
	// update.
	TaskTrain TaskKind = "train"
	// TaskEvaluate: evaluate the base model on the dataset and send
	// [EvalResult].
	TaskEvaluate TaskKind = "evaluate"
)

// TaskOffer offers an agent a task in a round.
//
// Direction: coordinator → agent. When: on the control stream, in the
// configure phase of a round. The agent answers [TaskAccept] or
// [TaskDecline]; after accepting it downloads the base model (a stream
// beginning with [ModelRequest]) unless it already has it, does the work
// and uploads an update (a stream beginning with [UpdateHeader]) or sends
// [EvalResult], all before DeadlineMs.
type TaskOffer struct {
	// TaskID names the task; unique per coordinator.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the round number.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// Kind is what to do.
	Kind TaskKind `cbor:"3,keyasint,omitempty"`
	// BaseVersion is the model version to start from.
	BaseVersion uint64 `cbor:"4,keyasint,omitempty"`
	// BaseHash is the SHA-256 of BaseVersion's weights; the agent checks
	// the downloaded model against it.
	BaseHash Hash `cbor:"5,keyasint,omitempty"`
	// Dataset names the local dataset to use (see DatasetInfo.Name).
	Dataset string `cbor:"6,keyasint,omitempty"`
	// Config holds the hyper-parameters (for evaluation only Batch is
	// used).
	Config TrainConfig `cbor:"7,keyasint,omitempty"`
	// ModelSpec is the model architecture as JSON, opaque to the protocol
	// (the compute package defines it).
	ModelSpec []byte `cbor:"8,keyasint,omitempty"`
	// DeadlineMs is when the result must have arrived (coordinator clock,
	// Unix milliseconds).
	DeadlineMs int64 `cbor:"9,keyasint,omitempty"`
	// SecAgg, when set, says the update must be securely aggregated.
	SecAgg *SecAggParams `cbor:"10,keyasint,omitempty"`
	// DP, when set, asks for local differential-privacy steps.
	DP *DPParams `cbor:"11,keyasint,omitempty"`
	// Semi, when set, asks for semi-supervised local training (FixMatch).
	Semi *SemiParams `cbor:"20,keyasint,omitempty"`
}

// TrainConfig holds the hyper-parameters of a training task.
type TrainConfig struct {
	// Epochs is the number of local epochs (0 if LocalSteps is used).
	Epochs uint32 `cbor:"1,keyasint,omitempty"`
	// Batch is the mini-batch size; >= 1.
	Batch uint32 `cbor:"2,keyasint,omitempty"`
	// LR is the learning rate.
	LR float64 `cbor:"3,keyasint,omitempty"`
	// Optimizer is "sgd", "momentum" or "adam".
	Optimizer string `cbor:"4,keyasint,omitempty"`
	// Momentum is the momentum coefficient, in [0, 1).
	Momentum float64 `cbor:"5,keyasint,omitempty"`
	// WeightDecay is the L2 weight decay.
	WeightDecay float64 `cbor:"6,keyasint,omitempty"`
	// ProxMu is FedProx's proximal coefficient (0 = plain FedAvg).
	ProxMu float64 `cbor:"7,keyasint,omitempty"`
	// Extra carries strategy-specific settings as strings.
	Extra map[string]string `cbor:"8,keyasint,omitempty"`
	// LocalSteps, if > 0, bounds training to this many mini-batches instead
	// of Epochs.
	LocalSteps uint32 `cbor:"9,keyasint,omitempty"`
}

// SecAggParams configures secure aggregation for a task. Its meaning is
// defined by the secure-aggregation design (privacy package); the protocol
// only carries and range-checks it.
type SecAggParams struct {
	// Threshold is how many shares reconstruct a secret.
	Threshold uint32 `cbor:"1,keyasint,omitempty"`
	// Neighbours is the number of neighbours each agent masks with.
	Neighbours uint32 `cbor:"2,keyasint,omitempty"`
	// ModulusBits is the bit width of the masking group (32: Z_2^32).
	ModulusBits uint32 `cbor:"3,keyasint,omitempty"`
	// QuantRange is the fixed-point quantization range.
	QuantRange float64 `cbor:"4,keyasint,omitempty"`
	// ClipRange is the value range clipped to before quantization.
	ClipRange float64 `cbor:"5,keyasint,omitempty"`
	// Participants is the number of agents selected for the round.
	Participants uint32 `cbor:"6,keyasint,omitempty"`
	// Members are the agents selected for the round, sorted; the masks, shares and
	// signatures of the round are bound to this list.
	Members []string `cbor:"7,keyasint,omitempty"`
	// GraphSeed (32 bytes) picks the round's neighbour graph.
	GraphSeed []byte `cbor:"8,keyasint,omitempty"`
	// MaxWeight is the update weight (examples) that scales to 1; larger weights are
	// capped at it.
	MaxWeight float64 `cbor:"9,keyasint,omitempty"`
	// Levels is the largest quantized value.
	Levels uint32 `cbor:"10,keyasint,omitempty"`
	// Extra is opaque, for parameters defined later by the privacy package.
	Extra []byte `cbor:"15,keyasint,omitempty"`
}

// MechanismDPSGD is the DPParams mechanism of record-level DP-SGD in local training.
const MechanismDPSGD = "dp-sgd"

// DPParams configures local differential-privacy steps for a task; like
// SecAggParams, the privacy package defines the meaning.
type DPParams struct {
	// ClipNorm is the L2 norm each update is clipped to.
	ClipNorm float64 `cbor:"1,keyasint,omitempty"`
	// NoiseMultiplier is the noise standard deviation over ClipNorm that
	// this agent adds (0 for central noise).
	NoiseMultiplier float64 `cbor:"2,keyasint,omitempty"`
	// Mechanism names the noise: "gaussian", "discrete-gaussian",
	// "skellam"; or "dp-sgd": record-level DP-SGD in local training (each
	// record's gradient clipped to ClipNorm, noise NoiseMultiplier × ClipNorm
	// on each step's sum, Poisson samples of rate Batch / records).
	Mechanism string `cbor:"3,keyasint,omitempty"`
	// MinRecords, for dp-sgd: an agent with fewer labelled records declines,
	// since the coordinator accounts for a sampling rate of at most
	// Batch / MinRecords.
	MinRecords uint32 `cbor:"4,keyasint,omitempty"`
	// Gamma, Bits, Sigma2 and RotationSeed configure "discrete-gaussian"
	// (distributed DP through secure aggregation): the grid step of the
	// encoding, the bits of the modular sum, each agent's discrete Gaussian
	// variance in grid steps, and the 32-byte seed of the round's randomized
	// Hadamard rotation (privacy/dp.Distributed).
	Gamma        float64 `cbor:"5,keyasint,omitempty"`
	Bits         uint32  `cbor:"6,keyasint,omitempty"`
	Sigma2       float64 `cbor:"7,keyasint,omitempty"`
	RotationSeed []byte  `cbor:"8,keyasint,omitempty"`
}

// MechanismDiscreteGaussian is the DPParams mechanism of distributed DP: each agent adds
// its share of discrete Gaussian noise to its encoded update before secure aggregation.
const MechanismDiscreteGaussian = "discrete-gaussian"

// Type implements [Message].
func (*TaskOffer) Type() MsgType { return MsgTaskOffer }

// Validate checks field ranges; see [Message].
func (m *TaskOffer) Validate() error {
	c := &m.Config
	if err := firstErr(
		checkRequired("TaskOffer.TaskID", m.TaskID, MaxIDLen),
		checkRequired("TaskOffer.Kind", m.Kind, MaxShortStringLen),
		checkLen("TaskOffer.Dataset", m.Dataset, MaxNameLen),
		checkLen("TaskOffer.ModelSpec", m.ModelSpec, MaxModelSpecLen),
		checkLen("TaskOffer.Config.Optimizer", c.Optimizer, MaxShortStringLen),
		checkNonNegFinite("TaskOffer.Config.LR", c.LR),
		checkNonNegFinite("TaskOffer.Config.Momentum", c.Momentum),
		checkNonNegFinite("TaskOffer.Config.WeightDecay", c.WeightDecay),
		checkNonNegFinite("TaskOffer.Config.ProxMu", c.ProxMu),
		checkStringMap("TaskOffer.Config.Extra", c.Extra),
	); err != nil {
		return err
	}
	if c.Batch < 1 {
		return fmt.Errorf("TaskOffer.Config.Batch is 0; it must be >= 1")
	}
	if c.Momentum >= 1 {
		return fmt.Errorf("TaskOffer.Config.Momentum is %v; it must be in [0, 1)", c.Momentum)
	}
	if m.Kind == TaskTrain && c.Epochs == 0 && c.LocalSteps == 0 {
		return fmt.Errorf("TaskOffer for training has Config.Epochs = Config.LocalSteps = 0; set one of them")
	}
	if s := m.SecAgg; s != nil {
		if s.Threshold < 1 {
			return fmt.Errorf("TaskOffer.SecAgg.Threshold is 0; it must be >= 1")
		}
		if s.ModulusBits < 1 || s.ModulusBits > 64 {
			return fmt.Errorf("TaskOffer.SecAgg.ModulusBits is %d; it must be within [1, 64]", s.ModulusBits)
		}
		if err := firstErr(
			checkPosFinite("TaskOffer.SecAgg.QuantRange", s.QuantRange),
			checkPosFinite("TaskOffer.SecAgg.ClipRange", s.ClipRange),
			checkLen("TaskOffer.SecAgg.Extra", s.Extra, MaxModelSpecLen),
			checkStrings("TaskOffer.SecAgg.Members", s.Members, MaxSecAggPeers, MaxIDLen),
			checkNonNegFinite("TaskOffer.SecAgg.MaxWeight", s.MaxWeight),
		); err != nil {
			return err
		}
		if len(s.GraphSeed) != 0 && len(s.GraphSeed) != 32 {
			return fmt.Errorf("TaskOffer.SecAgg.GraphSeed has %d bytes; it must have 32", len(s.GraphSeed))
		}
	}
	if s := m.Semi; s != nil {
		if err := s.validate(); err != nil {
			return err
		}
	}
	if d := m.DP; d != nil {
		if err := firstErr(
			checkPosFinite("TaskOffer.DP.ClipNorm", d.ClipNorm),
			checkNonNegFinite("TaskOffer.DP.NoiseMultiplier", d.NoiseMultiplier),
			checkLen("TaskOffer.DP.Mechanism", d.Mechanism, MaxShortStringLen),
			checkNonNegFinite("TaskOffer.DP.Gamma", d.Gamma),
			checkNonNegFinite("TaskOffer.DP.Sigma2", d.Sigma2),
		); err != nil {
			return err
		}
		if d.Bits > 32 {
			return fmt.Errorf("TaskOffer.DP.Bits is %d; it must be at most 32", d.Bits)
		}
		if len(d.RotationSeed) != 0 && len(d.RotationSeed) != 32 {
			return fmt.Errorf("TaskOffer.DP.RotationSeed has %d bytes; it must have 32", len(d.RotationSeed))
		}
	}
	return nil
}

// TaskAccept accepts a [TaskOffer].
//
// Direction: agent → coordinator. When: on the control stream, in reply to
// a TaskOffer the agent will do.
type TaskAccept struct {
	// TaskID is the offer's TaskID.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the offer's Round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
}

// Type implements [Message].
func (*TaskAccept) Type() MsgType { return MsgTaskAccept }

// Validate checks field ranges; see [Message].
func (m *TaskAccept) Validate() error {
	return checkRequired("TaskAccept.TaskID", m.TaskID, MaxIDLen)
}

// TaskDecline declines a [TaskOffer], or abandons an accepted task.
//
// Direction: agent → coordinator. When: on the control stream, in reply to
// a TaskOffer the agent will not do (CodeBusy, CodeUnavailable,
// CodeStaleBase...), or later if an accepted task fails.
type TaskDecline struct {
	// TaskID is the offer's TaskID.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the offer's Round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// Reason is human-readable.
	Reason string `cbor:"3,keyasint,omitempty"`
	// Code classifies the reason.
	Code ErrorCode `cbor:"4,keyasint,omitempty"`
}

// Type implements [Message].
func (*TaskDecline) Type() MsgType { return MsgTaskDecline }

// Validate checks field ranges; see [Message].
func (m *TaskDecline) Validate() error {
	return firstErr(
		checkRequired("TaskDecline.TaskID", m.TaskID, MaxIDLen),
		checkLen("TaskDecline.Reason", m.Reason, MaxErrorMessageLen),
	)
}

// TaskCancel withdraws a task.
//
// Direction: coordinator → agent. When: on the control stream, when the
// round the task belongs to fails or is aborted; the agent stops the work
// and sends nothing more for the task.
type TaskCancel struct {
	// TaskID names the task.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the task's round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// Reason is human-readable.
	Reason string `cbor:"3,keyasint,omitempty"`
	// Code classifies the reason (usually CodeCancelled or
	// CodeDeadlineExceeded).
	Code ErrorCode `cbor:"4,keyasint,omitempty"`
}

// Type implements [Message].
func (*TaskCancel) Type() MsgType { return MsgTaskCancel }

// Validate checks field ranges; see [Message].
func (m *TaskCancel) Validate() error {
	return firstErr(
		checkRequired("TaskCancel.TaskID", m.TaskID, MaxIDLen),
		checkLen("TaskCancel.Reason", m.Reason, MaxErrorMessageLen),
	)
}

// ModelRequest asks for a model version's weights.
//
// Direction: agent → coordinator. When: first frame of a model-download
// stream (a bidirectional stream the agent opens). The coordinator answers
// on the same stream with a tensor stream ([TensorHeader], raw bytes,
// [TensorTrailer]) or an [Error] (CodeNotFound), then closes its side.
type ModelRequest struct {
	// Version is the model version wanted.
	Version uint64 `cbor:"1,keyasint,omitempty"`
	// Hash, if not zero, is the SHA-256 the agent expects (from
	// TaskOffer.BaseHash); the coordinator answers CodeHashMismatch if its
	// version has another.
	Hash Hash `cbor:"2,keyasint,omitempty"`
	// TaskID, if set, is the task the download is for (for logs and
	// admission control).
	TaskID string `cbor:"3,keyasint,omitempty"`
}

// Type implements [Message].
func (*ModelRequest) Type() MsgType { return MsgModelRequest }

// Validate checks field ranges; see [Message].
func (m *ModelRequest) Validate() error {
	return checkLen("ModelRequest.TaskID", m.TaskID, MaxIDLen)
}

// UpdateHeader describes an update being uploaded.
//
// Direction: agent → coordinator. When: first frame of an update-upload
// stream (a bidirectional stream the agent opens after training), followed
// on the same stream by the tensor stream of the update. The coordinator
// answers [UpdateAck] or [Error] on the stream after the trailer; the agent
// waits for that answer before closing.
type UpdateHeader struct {
	// TaskID is the task's ID.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the task's round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// BaseVersion is the model version the update was trained from.
	BaseVersion uint64 `cbor:"3,keyasint,omitempty"`
	// BaseHash is BaseVersion's SHA-256.
	BaseHash Hash `cbor:"4,keyasint,omitempty"`
	// Examples is the number of examples trained on (the FedAvg weight).
	Examples uint64 `cbor:"5,keyasint,omitempty"`
	// Metrics are training metrics (e.g. "loss", "accuracy").
	Metrics map[string]float64 `cbor:"6,keyasint,omitempty"`
	// Masked says the tensors are secure-aggregation masked vectors (U32)
	// rather than plain weights or deltas.
	Masked bool `cbor:"7,keyasint,omitempty"`
}

// Type implements [Message].
func (*UpdateHeader) Type() MsgType { return MsgUpdateHeader }

// Validate checks field ranges; see [Message].
func (m *UpdateHeader) Validate() error {
	return firstErr(
		checkRequired("UpdateHeader.TaskID", m.TaskID, MaxIDLen),
		checkMetrics("UpdateHeader.Metrics", m.Metrics),
	)
}

// UpdateAck confirms that an uploaded update was received whole and
// accepted.
//
// Direction: coordinator → agent. When: on the update-upload stream, after
// the coordinator has read and checked the trailer.
type UpdateAck struct {
	// TaskID is the task's ID.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the task's round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// SHA256 is the hash of the tensor bytes received (equal to the
	// trailer's).
	SHA256 Hash `cbor:"3,keyasint,omitempty"`
}

// Type implements [Message].
func (*UpdateAck) Type() MsgType { return MsgUpdateAck }

// Validate checks field ranges; see [Message].
func (m *UpdateAck) Validate() error {
	return checkRequired("UpdateAck.TaskID", m.TaskID, MaxIDLen)
}

// EvalRequest asks an agent to evaluate a model version outside a training
// round (an in-round evaluation is a TaskOffer of kind "evaluate").
//
// Direction: coordinator → agent. When: on the control stream, whenever an
// operator asks. The agent downloads the model if needed and answers
// [EvalResult], or [TaskDecline].
type EvalRequest struct {
	// TaskID names the request.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the round the request belongs to (0 if none).
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// Version is the model version to evaluate.
	Version uint64 `cbor:"3,keyasint,omitempty"`
	// Hash is Version's SHA-256.
	Hash Hash `cbor:"4,keyasint,omitempty"`
	// Dataset names the local dataset.
	Dataset string `cbor:"5,keyasint,omitempty"`
	// Batch is the evaluation batch size; >= 1.
	Batch uint32 `cbor:"6,keyasint,omitempty"`
	// DeadlineMs is when the result must have arrived (Unix ms).
	DeadlineMs int64 `cbor:"7,keyasint,omitempty"`
}

// Type implements [Message].
func (*EvalRequest) Type() MsgType { return MsgEvalRequest }

// Validate checks field ranges; see [Message].
func (m *EvalRequest) Validate() error {
	if m.Batch < 1 {
		return fmt.Errorf("EvalRequest.Batch is 0; it must be >= 1")
	}
	return firstErr(
		checkRequired("EvalRequest.TaskID", m.TaskID, MaxIDLen),
		checkLen("EvalRequest.Dataset", m.Dataset, MaxNameLen),
	)
}

// EvalResult reports an evaluation.
//
// Direction: agent → coordinator. When: on the control stream, after an
// evaluate TaskOffer or an EvalRequest completes.
type EvalResult struct {
	// TaskID is the task's ID.
	TaskID string `cbor:"1,keyasint,omitempty"`
	// Round is the task's round.
	Round uint64 `cbor:"2,keyasint,omitempty"`
	// Examples is the number of examples evaluated (the weight).
	Examples uint64 `cbor:"3,keyasint,omitempty"`
	// Metrics are the results (e.g. "loss", "accuracy").
	Metrics map[string]float64 `cbor:"4,keyasint,omitempty"`
}

// Type implements [Message].
func (*EvalResult) Type() MsgType { return MsgEvalResult }

// Validate checks field ranges; see [Message].
func (m *EvalResult) Validate() error {
	return firstErr(
		checkRequired("EvalResult.TaskID", m.TaskID, MaxIDLen),
		checkMetrics("EvalResult.Metrics", m.Metrics),
	)
}

// ---- secure aggregation ----------------------------------------------------
//
// The secure-aggregation messages are defined by the secure-aggregation
// design (privacy package); the protocol carries them and bounds their
// sizes. Each has the round and task it belongs to, the fields already
// known, and an opaque Payload (key 15) for anything added later.

// SecAggAdvertise publishes an agent's public keys for a round.
//
// Direction: agent → coordinator. When: on the control stream, in the
// advertise-keys phase of a secure round.
type SecAggAdvertise struct {
	// Round is the round.
	Round uint64 `cbor:"1,keyasint,omitempty"`
	// TaskID is the agent's task in the round.
	TaskID string `cbor:"2,keyasint,omitempty"`
	// EncPub is the key-agreement public key for encrypting shares.
	EncPub PublicKey `cbor:"3,keyasint,omitempty"`
	// MaskPub is the key-agreement public key for pairwise masks.
	MaskPub PublicKey `cbor:"4,keyasint,omitempty"`
	// Signature signs the keys with the agent's certificate key.
	Signature []byte `cbor:"5,keyasint,omitempty"`
	// SelfCommit is a hash committing the agent to its self-mask seed.
	SelfCommit Hash `cbor:"6,keyasint,omitempty"`
	// Payload is opaque, defined by the privacy package.
	Payload []byte `cbor:"15,keyasint,omitempty"`
}

// Type implements [Message].
func (*SecAggAdvertise) Type() MsgType { return MsgSecAggAdvertise }

// Validate checks field ranges; see [Message].
func (m *SecAggAdvertise) Validate() error {
	return firstErr(
		checkLen("SecAggAdvertise.TaskID", m.TaskID, MaxIDLen),
		checkLen("SecAggAdvertise.Signature", m.Signature, MaxSignatureLen),
	)
}

// SecAggPeer is one neighbour's advertised keys in a [SecAggRoster].
type SecAggPeer struct {
	// AgentID names the neighbour.
	AgentID string `cbor:"1,keyasint,omitempty"`
	// EncPub is the neighbour's EncPub.
	EncPub PublicKey `cbor:"2,keyasint,omitempty"`
	// MaskPub is the neighbour's MaskPub.
	MaskPub PublicKey `cbor:"3,keyasint,omitempty"`
	// Signature is the neighbour's signature over its keys.
	Signature []byte `cbor:"4,keyasint,omitempty"`
	// Certificate is the neighbour's certificate (DER), to check Signature.
	Certificate []byte `cbor:"5,keyasint,omitempty"`
	// SelfCommit is the neighbour's SelfCommit.
	SelfCommit Hash `cbor:"6,keyasint,omitempty"`
}

// SecAggRoster gives an agent its neighbours' advertised keys.
//
// Direction: coordinator → agent. When: on the control stream, when the
// advertise-keys phase of a secure round closes.
type SecAggRoster struct {
	// Round is the round.
	Round uint64 `cbor:"1,keyasint,omitempty"`
	// TaskID is the receiving agent's task.
	TaskID string `cbor:"2,keyasint,omitempty"`
	// Peers are the agent's neighbours that advertised keys.
	Peers []SecAggPeer `cbor:"3,keyasint,omitempty"`
	// Payload is opaque, defined by the privacy package.
	Payload []byte `cbor:"15,keyasint,omitempty"`
}

// Type implements [Message].
func (*SecAggRoster) Type() MsgType { return MsgSecAggRoster }

// Validate checks field ranges; see [Message].
func (m *SecAggRoster) Validate() error {
	if err := firstErr(
		checkLen("SecAggRoster.TaskID", m.TaskID, MaxIDLen),
		checkCount("SecAggRoster.Peers", len(m.Peers), MaxSecAggPeers),
	); err != nil {
		return err
	}
	for i, p := range m.Peers {
		f := fmt.Sprintf("SecAggRoster.Peers[%d]", i)
		if err := firstErr(
			checkRequired(f+".AgentID", p.AgentID, MaxIDLen),
			checkLen(f+".Signature", p.Signature, MaxSignatureLen),
			checkLen(f+".Certificate", p.Certificate, MaxCertLen),
		); err != nil {
			return err
		}
	}
	return nil
}

// SecAggShares carries encrypted secret shares between neighbours through
// the coordinator.
//
// Direction: agent → coordinator (shares this agent made, keyed by
// recipient), then coordinator → agent (shares made for this agent, keyed
// by sender). When: on the control stream, in the share-keys phase.
type SecAggShares struct {
	// Round is the round.
	Round uint64 `cbor:"1,keyasint,omitempty"`
	// TaskID is the agent's task.
	TaskID string `cbor:"2,keyasint,omitempty"`
	// Encrypted maps an agent ID to a ciphertext only that agent can open.
	Encrypted map[string][]byte `cbor:"3,keyasint,omitempty"`
	// Payload is opaque, defined by the privacy package.
	Payload []byte `cbor:"15,keyasint,omitempty"`
}

// Type implements [Message].
func (*SecAggShares) Type() MsgType { return MsgSecAggShares }

// Validate checks field ranges; see [Message].
func (m *SecAggShares) Validate() error {
	if err := firstErr(
		checkLen("SecAggShares.TaskID", m.TaskID, MaxIDLen),
		checkCount("SecAggShares.Encrypted", len(m.Encrypted), MaxSecAggPeers),
	); err != nil {
		return err
	}
	for k := range m.Encrypted {
		if err := checkRequired("SecAggShares.Encrypted key", k, MaxIDLen); err != nil {
			return err
		}
	}
	return nil
}

// SecAggUnmaskRequest asks surviving agents for the shares that remove
// masks.
//
// Direction: coordinator → agent. When: on the control stream, in the
// unmask phase, after masked updates have been collected.
type SecAggUnmaskRequest struct {
	// Round is the round.
	Round uint64 `cbor:"1,keyasint,omitempty"`
	// TaskID is the agent's task.
	TaskID string `cbor:"2,keyasint,omitempty"`
	// Survivors are the agents whose masked updates arrived (reveal their
	// self-mask shares).
	Survivors []string `cbor:"3,keyasint,omitempty"`
	// Dropped are the agents whose updates did not arrive (reveal their
	// pairwise-mask key shares).
	Dropped []string `cbor:"4,keyasint,omitempty"`
	// Payload is opaque, defined by the privacy package.
	Payload []byte `cbor:"15,keyasint,omitempty"`
}

// Type implements [Message].
func (*SecAggUnmaskRequest) Type() MsgType { return MsgSecAggUnmaskRequest }

// Validate checks field ranges; see [Message].
func (m *SecAggUnmaskRequest) Validate() error {
	return firstErr(
		checkLen("SecAggUnmaskRequest.TaskID", m.TaskID, MaxIDLen),
		checkStrings("SecAggUnmaskRequest.Survivors", m.Survivors, MaxSecAggPeers, MaxIDLen),
		checkStrings("SecAggUnmaskRequest.Dropped", m.Dropped, MaxSecAggPeers, MaxIDLen),
	)
}

// SecAggUnmaskResponse returns the shares an unmask request asked for.
//
// Direction: agent → coordinator. When: on the control stream, in reply to
// [SecAggUnmaskRequest].
type SecAggUnmaskResponse struct {
	// Round is the round.
	Round uint64 `cbor:"1,keyasint,omitempty"`
	// TaskID is the agent's task.
	TaskID string `cbor:"2,keyasint,omitempty"`
	// Shares maps an agent ID to the revealed share for that agent.
	Shares map[string][]byte `cbor:"3,keyasint,omitempty"`
	// Payload is opaque, defined by the privacy package.
	Payload []byte `cbor:"15,keyasint,omitempty"`
}

// Type implements [Message].
func (*SecAggUnmaskResponse) Type() MsgType { return MsgSecAggUnmaskResponse }

// Validate checks field ranges; see [Message].
func (m *SecAggUnmaskResponse) Validate() error {
	if err := firstErr(
		checkLen("SecAggUnmaskResponse.TaskID", m.TaskID, MaxIDLen),
		checkCount("SecAggUnmaskResponse.Shares", len(m.Shares), MaxSecAggPeers),
	); err != nil {
		return err
	}
	for k := range m.Shares {
		if err := checkRequired("SecAggUnmaskResponse.Shares key", k, MaxIDLen); err != nil {
			return err
		}
	}
	return nil
}

// ---- administration --------------------------------------------------------

// AdminRequest is one call of the admin API.
//
// Direction: admin client → coordinator. When: first frame of a stream
// opened by a client holding an admin certificate (no Hello). The
// coordinator answers [AdminResponse] or [Error] on the same stream.
type AdminRequest struct {
	// Method names the call, e.g. "rounds.start"; the coordinator defines
	// the set.
	Method string `cbor:"1,keyasint,omitempty"`
	// Body is the call's arguments as JSON, opaque to the protocol.
	Body []byte `cbor:"2,keyasint,omitempty"`
}

// Type implements [Message].
func (*AdminRequest) Type() MsgType { return MsgAdminRequest }

// Validate checks field ranges; see [Message].
func (m *AdminRequest) Validate() error {
	return checkRequired("AdminRequest.Method", m.Method, MaxShortStringLen)
}

// AdminResponse is the result of an [AdminRequest].
//
// Direction: coordinator → admin client. When: on the request's stream.
// Large results may span several AdminResponse frames; the last has More
// unset.
type AdminResponse struct {
	// Body is the result as JSON, opaque to the protocol.
	Body []byte `cbor:"1,keyasint,omitempty"`
	// More says another AdminResponse frame follows.
	More bool `cbor:"2,keyasint,omitempty"`
}

// Type implements [Message].
func (*AdminResponse) Type() MsgType { return MsgAdminResponse }

// Validate checks field ranges; see [Message].
func (m *AdminResponse) Validate() error { return nil }
