package protocol

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestErrorIsAndAs(t *testing.T) {
	base := wrapError(CodeMalformed, io.ErrUnexpectedEOF, "stream ended")
	err := fmt.Errorf("agent: reading model: %w", base)
	if !errors.Is(err, CodeMalformed) || errors.Is(err, CodeInternal) {
		t.Fatal("errors.Is by code does not work through wrapping")
	}
	if !errors.Is(err, &Error{Code: CodeMalformed}) {
		t.Fatal("errors.Is with an *Error target does not match by code")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal("cause is not reachable")
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeMalformed {
		t.Fatalf("errors.As: %v", pe)
	}
	if s := err.Error(); !strings.Contains(s, "malformed") || !strings.Contains(s, "stream ended") || !strings.Contains(s, "unexpected EOF") {
		t.Fatalf("Error() = %q lacks code, message or cause", s)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want ErrorCode
	}{
		{nil, CodeNone},
		{errors.New("disk full"), CodeInternal},
		{NewError(CodeBusy, "later"), CodeBusy},
		{fmt.Errorf("ctx: %w", NewError(CodeRevoked, "x")), CodeRevoked},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestErrorCodeTable(t *testing.T) {
	names := map[string]bool{}
	for c, info := range codeTable {
		if names[info.name] {
			t.Errorf("name %q used twice", info.name)
		}
		names[info.name] = true
		if c.String() != info.name || !c.Known() {
			t.Errorf("code %d: String %q Known %v", c, c.String(), c.Known())
		}
		if got := CodeFromAppError(c.AppErrorCode()); got != c {
			t.Errorf("app error round trip of %v gives %v", c, got)
		}
		if e := NewError(c, "x"); e.Retryable != c.Retryable() {
			t.Errorf("NewError(%v).Retryable = %v", c, e.Retryable)
		}
	}
	if CodeNone.AppErrorCode() != 0 {
		t.Error("CodeNone must map to QUIC application error 0")
	}
	if ErrorCode(999).String() != "code-999" || ErrorCode(999).Known() {
		t.Error("unknown code not reported as such")
	}
	if CodeFromAppError(1<<40) != CodeProtocol {
		t.Error("out-of-range application error not mapped to CodeProtocol")
	}
}

func TestNegotiateVersion(t *testing.T) {
	tests := []struct {
		min, max uint32
		want     uint32
		ok       bool
	}{
		{0, 1, 1, true},
		{1, 1, 1, true},
		{1, 5, 1, true},  // newer agent that still speaks 1
		{0, 0, 0, false}, // no version
		{2, 5, 0, false}, // newer agent that dropped 1
		{3, 2, 0, false}, // nonsense range: treated as [2,2]
	}
	for _, tt := range tests {
		got, err := NegotiateVersion(tt.min, tt.max)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NegotiateVersion(%d, %d) = %d, %v; want %d, ok=%v", tt.min, tt.max, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, CodeUnsupportedVersion) {
			t.Errorf("error %v has the wrong code", err)
		}
	}
	if CheckVersion(Version) != nil || !errors.Is(CheckVersion(Version+1), CodeUnsupportedVersion) {
		t.Error("CheckVersion")
	}
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("x", 5000)
	offer := func(f func(*TaskOffer)) Message {
		m := *sampleMessages()[8].(*TaskOffer)
		f(&m)
		return &m
	}
	tests := []struct {
		name string
		m    Message
		want string // substring of the error
	}{
		{"hello version 0", &Hello{}, "ProtocolVersion"},
		{"hello long id", &Hello{ProtocolVersion: 1, AgentID: long}, "AgentID"},
		{"hello too many datasets", &Hello{ProtocolVersion: 1, Capabilities: Capabilities{Datasets: make([]DatasetInfo, MaxDatasets+1)}}, "Datasets"},
		{"hello unnamed dataset", &Hello{ProtocolVersion: 1, Capabilities: Capabilities{Datasets: []DatasetInfo{{Examples: 1}}}}, "Name"},
		{"hello labelled > examples", &Hello{ProtocolVersion: 1, Capabilities: Capabilities{Datasets: []DatasetInfo{{Name: "d", Examples: 1, Labelled: 2}}}}, "labelled"},
		{"welcome heartbeat 0", &Welcome{ProtocolVersion: 1, AgentID: "a"}, "HeartbeatIntervalMs"},
		{"enroll no token", &EnrollRequest{CSR: []byte{1}}, "Token"},
		{"enroll huge csr", &EnrollRequest{Token: "t", CSR: make([]byte, MaxCertLen+1)}, "CSR"},
		{"offer batch 0", offer(func(m *TaskOffer) { m.Config.Batch = 0 }), "Batch"},
		{"offer no epochs", offer(func(m *TaskOffer) { m.Config.Epochs = 0 }), "Epochs"},
		{"offer NaN lr", offer(func(m *TaskOffer) { m.Config.LR = nan() }), "LR"},
		{"offer momentum 1", offer(func(m *TaskOffer) { m.Config.Momentum = 1 }), "Momentum"},
		{"offer no kind", offer(func(m *TaskOffer) { m.Kind = "" }), "Kind"},
		{"offer secagg bits", offer(func(m *TaskOffer) { m.SecAgg.ModulusBits = 65 }), "ModulusBits"},
		{"offer dp clip", offer(func(m *TaskOffer) { m.DP.ClipNorm = 0 }), "ClipNorm"},
		{"offer extra key", offer(func(m *TaskOffer) { m.Config.Extra = map[string]string{"": "x"} }), "Extra"},
		{"update metrics", &UpdateHeader{TaskID: "t", Metrics: map[string]float64{"": 1}}, "Metrics"},
		{"eval batch", &EvalRequest{TaskID: "e"}, "Batch"},
		{"error code none", &Error{Msg: "x"}, "Code"},
		{"error long", &Error{Code: CodeBusy, Msg: long}, "Msg"},
		{"welcome empty feature", &Welcome{ProtocolVersion: 1, AgentID: "a", HeartbeatIntervalMs: 1000, Features: []string{""}}, "Features[0]"},
		{"welcome many features", &Welcome{ProtocolVersion: 1, AgentID: "a", HeartbeatIntervalMs: 1000, Features: make([]string, 65)}, "Features"},
		{"roster unnamed peer", &SecAggRoster{Peers: []SecAggPeer{{}}}, "AgentID"},
		{"admin no method", &AdminRequest{}, "Method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.want)
			}
			// The reader turns the same failure into CodeInvalid.
			var pe *Error
			if _, err := decodeMessage(tt.m.Type(), mustEncode(t, tt.m)); !errors.As(err, &pe) ||
				(pe.Code != CodeInvalid && pe.Code != CodeMalformed) {
				t.Fatalf("reader: %v, want CodeInvalid", err)
			}
		})
	}
}

// mustEncode encodes m's payload without validation.
func mustEncode(tb testing.TB, m Message) []byte {
	tb.Helper()
	b, err := wire.enc.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
