package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRoundTripAllMessages(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			b := frameBytes(t, m)
			if MsgType(b[0]) != m.Type() {
				t.Fatalf("type byte 0x%02x, want 0x%02x", b[0], byte(m.Type()))
			}
			got, err := NewReader(bytes.NewReader(b), 0).Read()
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip mismatch:\n got %#v\nwant %#v", got, m)
			}
			// Deterministic: encoding again gives the same bytes.
			if b2 := frameBytes(t, got); !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
			}
		})
	}
}

func TestMessageTypesAreDistinctAndNamed(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, m := range sampleMessages() {
		if seen[m.Type()] {
			t.Fatalf("type %v used twice", m.Type())
		}
		seen[m.Type()] = true
		if reflect.TypeOf(NewMessage(m.Type())) != reflect.TypeOf(m) {
			t.Fatalf("NewMessage(%v) returns %T, want %T", m.Type(), NewMessage(m.Type()), m)
		}
		if strings.HasPrefix(m.Type().String(), "MsgType(") {
			t.Fatalf("type 0x%02x has no name", byte(m.Type()))
		}
	}
	if len(seen) != len(msgNames) {
		t.Fatalf("samples cover %d types, %d are defined", len(seen), len(msgNames))
	}
	if NewMessage(0xEE) != nil || MsgType(0xEE).String() != "MsgType(0xee)" {
		t.Fatal("undefined type not reported as such")
	}
}

// TestGoldenEncoding pins the exact bytes of a frame, as PROTOCOL.md shows
// them, so that other implementations can be checked against it.
func TestGoldenEncoding(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{&Heartbeat{Seq: 1, SentAtMs: 1000}, "0500000007a20101021903e8"},
		{&TaskAccept{TaskID: "t1", Round: 2}, "1100000007a2016274310202"},
		{&Error{Code: CodeBusy, Msg: "busy", Retryable: true}, "080000000ca301182002646275737903f5"},
		{&ModelRequest{Version: 3}, "1400000003a10103"},
	}
	for _, tt := range tests {
		want := strings.ReplaceAll(tt.want, " ", "")
		if got := hex.EncodeToString(frameBytes(t, tt.m)); got != want {
			t.Errorf("%s encodes to %s, want %s", tt.m.Type(), got, want)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	hb := frameBytes(t, &Heartbeat{Seq: 1})
	tests := []struct {
		name   string
		input  []byte
		limit  int
		code   ErrorCode // 0: expect io.EOF
		eof    bool      // error must wrap io.ErrUnexpectedEOF
		sticky bool      // the next Read returns the same error
	}{
		{name: "empty stream", input: nil, sticky: true},
		{name: "truncated header", input: hb[:3], code: CodeMalformed, eof: true, sticky: true},
		{name: "truncated payload", input: hb[:len(hb)-1], code: CodeMalformed, eof: true, sticky: true},
		{name: "frame too large", input: rawFrame(MsgHeartbeat, make([]byte, 100)), limit: 99, code: CodeFrameTooLarge, sticky: true},
		{name: "unknown type", input: rawFrame(0xEE, []byte{0xa0}), code: CodeUnknownMessage},
		{name: "empty payload", input: rawFrame(MsgHeartbeat, nil), code: CodeMalformed},
		{name: "not a map", input: rawFrame(MsgHeartbeat, []byte{0x01}), code: CodeMalformed},
		{name: "trailing bytes", input: rawFrame(MsgHeartbeat, []byte{0xa1, 0x01, 0x01, 0x00}), code: CodeMalformed},
		{name: "duplicate key", input: rawFrame(MsgHeartbeat, []byte{0xa2, 0x01, 0x01, 0x01, 0x02}), code: CodeMalformed},
		{name: "indefinite length", input: rawFrame(MsgHeartbeat, []byte{0xbf, 0x01, 0x01, 0xff}), code: CodeMalformed},
		{name: "tag", input: rawFrame(MsgHeartbeat, []byte{0xa1, 0x01, 0xc1, 0x01}), code: CodeMalformed},
		{name: "negative into unsigned", input: rawFrame(MsgHeartbeat, []byte{0xa1, 0x01, 0x20}), code: CodeMalformed},
		{name: "invalid utf8", input: rawFrame(MsgTaskAccept, []byte{0xa1, 0x01, 0x61, 0xff}), code: CodeMalformed},
		{name: "short hash", input: rawFrame(MsgModelRequest, []byte{0xa2, 0x01, 0x01, 0x02, 0x41, 0x00}), code: CodeMalformed},
		{name: "deep nesting", input: rawFrame(MsgHeartbeat, append(bytes.Repeat([]byte{0xa1, 0x00}, 40), 0x00)), code: CodeMalformed},
		{name: "invalid: seq 0", input: rawFrame(MsgHeartbeat, []byte{0xa0}), code: CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid heartbeat follows every input, to check resynchronisation.
			rd := NewReader(io.MultiReader(bytes.NewReader(tt.input), bytes.NewReader(hb)), tt.limit)
			if tt.sticky {
				rd = NewReader(bytes.NewReader(tt.input), tt.limit)
			}
			m, err := rd.Read()
			if m != nil {
				t.Fatalf("got message %#v, want error", m)
			}
			if tt.code == 0 {
				if err != io.EOF {
					t.Fatalf("err = %v, want io.EOF", err)
				}
			} else {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != tt.code || !errors.Is(err, tt.code) {
					t.Fatalf("err = %v, want code %v", err, tt.code)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) != tt.eof {
					t.Fatalf("errors.Is(err, io.ErrUnexpectedEOF) = %v, want %v (err %v)", !tt.eof, tt.eof, err)
				}
				if errors.Is(err, io.EOF) {
					t.Fatalf("error %v must not look like a clean end of stream", err)
				}
			}
			_, err2 := rd.Read()
			if tt.sticky {
				if err2 != err {
					t.Fatalf("second Read: %v, want the same error %v", err2, err)
				}
				return
			}
			if err2 != nil {
				t.Fatalf("Read after a skipped frame: %v", err2)
			}
		})
	}
}

func TestReaderDoesNotAllocateClaimedSize(t *testing.T) {
	// A header announcing a 1 GiB frame under a 1 GiB limit, followed by 10
	// bytes: the reader must not allocate anywhere near the claimed size.
	in := append([]byte{byte(MsgHello), 0x40, 0, 0, 0}, make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(in), 1<<30).Read()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("allocated %d bytes for a frame that delivered 10", d)
	}
}

func TestReaderReusesBuffer(t *testing.T) {
	// 200 frames of ~100 KiB must not allocate 200 frame buffers.
	big := &AdminResponse{Body: bytes.Repeat([]byte("x"), 100<<10)}
	one := frameBytes(t, big)
	in := bytes.Repeat(one, 200)
	rd := NewReader(bytes.NewReader(in), 0)
	if _, err := rd.Read(); err != nil { // warm up: buffer grows once
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i < 200; i++ {
		m, err := rd.Read()
		if err != nil {
			t.Fatal(err)
		}
		_ = m
	}
	runtime.ReadMemStats(&after)
	// Each message's Body is a fresh copy (100 KiB); the frame buffer is not.
	perMsg := float64(after.TotalAlloc-before.TotalAlloc) / 199
	if perMsg > 1.5*float64(len(big.Body)) {
		t.Fatalf("%.0f bytes allocated per 100 KiB message; the frame buffer is not reused", perMsg)
	}
}

func TestDecodedBytesDoNotAliasBuffer(t *testing.T) {
	in := append(frameBytes(t, &AdminRequest{Method: "a", Body: []byte("first")}),
		frameBytes(t, &AdminRequest{Method: "b", Body: []byte("XXXXX")})...)
	rd := NewReader(bytes.NewReader(in), 0)
	m1, _ := rd.Read()
	if _, err := rd.Read(); err != nil {
		t.Fatal(err)
	}
	if got := string(m1.(*AdminRequest).Body); got != "first" {
		t.Fatalf("first message's Body changed to %q after the next Read", got)
	}
}

func TestReaderOneByteAtATime(t *testing.T) {
	var in []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		in = append(in, frameBytes(t, m)...)
	}
	rd := NewReader(iotest.OneByteReader(bytes.NewReader(in)), 0)
	for _, want := range msgs {
		got, err := rd.Read()
		if err != nil {
			t.Fatalf("Read %s: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %#v, want %#v", got, want)
		}
	}
	if _, err := rd.Read(); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	// Heartbeat{Seq: 5} plus key 99 (an array) and a text key: a newer
	// peer's additions must be skipped.
	payload := []byte{0xa3, 0x01, 0x05, 0x18, 0x63, 0x82, 0x01, 0x02, 0x61, 'z', 0xf5}
	m, err := NewReader(bytes.NewReader(rawFrame(MsgHeartbeat, payload)), 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	if hb := m.(*Heartbeat); hb.Seq != 5 {
		t.Fatalf("Seq = %d, want 5", hb.Seq)
	}
}

func TestWriterRefuses(t *testing.T) {
	tests := []struct {
		name  string
		m     Message
		limit int
		code  ErrorCode
	}{
		{"nil", nil, 0, CodeInternal},
		{"nil pointer", (*Hello)(nil), 0, CodeInternal},
		{"invalid", &Heartbeat{}, 0, CodeInvalid},
		{"too large", &AdminResponse{Body: make([]byte, 200)}, 100, CodeFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := NewWriter(&buf, tt.limit).Write(tt.m)
			if !errors.Is(err, tt.code) {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written despite the error", buf.Len())
			}
		})
	}
}

func TestExpect(t *testing.T) {
	w := &Welcome{ProtocolVersion: 1, AgentID: "a", HeartbeatIntervalMs: 1000}
	if got, err := Expect[*Welcome](w, nil); err != nil || got != w {
		t.Fatalf("Expect(Welcome) = %v, %v", got, err)
	}
	e := NewError(CodeRevoked, "certificate revoked")
	if _, err := Expect[*Welcome](e, nil); err != e {
		t.Fatalf("Expect(Error) returned %v, want the *Error", err)
	}
	if _, err := Expect[*Welcome](&Heartbeat{Seq: 1}, nil); !errors.Is(err, CodeProtocol) {
		t.Fatalf("Expect(Heartbeat) err = %v, want CodeProtocol", err)
	}
	if _, err := Expect[*Welcome](nil, io.EOF); err != io.EOF {
		t.Fatalf("Expect passes errors through: got %v", err)
	}
}

// TestHandshakeOverNetPipe runs the connect exchange the way agent and
// coordinator will, over a synchronous in-memory connection.
func TestHandshakeOverNetPipe(t *testing.T) {
	agentConn, coordConn := net.Pipe()
	defer agentConn.Close()
	done := make(chan error, 1)
	go func() {
		defer coordConn.Close()
		rd := NewReader(coordConn, 0)
		wr := NewWriter(coordConn, 0)
		hello, err := Expect[*Hello](rd.Read())
		if err != nil {
			done <- err
			return
		}
		v, err := NegotiateVersion(hello.MinProtocolVersion, hello.ProtocolVersion)
		if err != nil {
			done <- wr.Write(err.(*Error))
			return
		}
		if err := wr.Write(&Welcome{ProtocolVersion: v, AgentID: "agent-042", SessionID: "s1", HeartbeatIntervalMs: 1000}); err != nil {
			done <- err
			return
		}
		hb, err := Expect[*Heartbeat](rd.Read())
		if err != nil {
			done <- err
			return
		}
		done <- wr.Write(&HeartbeatAck{Seq: hb.Seq})
	}()
	rd := NewReader(agentConn, 0)
	wr := NewWriter(agentConn, 0)
	if err := wr.Write(sampleMessages()[0]); err != nil {
		t.Fatal(err)
	}
	w, err := Expect[*Welcome](rd.Read())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(w.ProtocolVersion); err != nil {
		t.Fatal(err)
	}
	if err := wr.Write(&Heartbeat{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if ack, err := Expect[*HeartbeatAck](rd.Read()); err != nil || ack.Seq != 1 {
		t.Fatalf("ack %v, err %v", ack, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLenientDecoding checks that non-preferred but valid encodings, as a
// simple encoder in another language produces them (cbor2's defaults:
// 64-bit floats, long integer forms), are accepted.
func TestLenientDecoding(t *testing.T) {
	tests := []struct {
		name    string
		t       MsgType
		payload []byte
		want    Message
	}{
		{"long uint", MsgHeartbeat, []byte{0xa1, 0x01, 0x1a, 0, 0, 0, 1}, &Heartbeat{Seq: 1}},
		{"long key", MsgHeartbeat, []byte{0xa1, 0x18, 0x01, 0x01}, &Heartbeat{Seq: 1}},
		{"unsorted keys, false and zero present", MsgHeartbeat,
			[]byte{0xa3, 0x03, 0xf4, 0x02, 0x00, 0x01, 0x02}, &Heartbeat{Seq: 2}},
		{"float64", MsgEvalResult, []byte{0xa2, 0x01, 0x61, 'e', 0x04, 0xa1, 0x61, 'a',
			0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, &EvalResult{TaskID: "e", Metrics: map[string]float64{"a": 0.1}}},
		{"empty hash", MsgModelRequest, []byte{0xa2, 0x01, 0x03, 0x02, 0x40}, &ModelRequest{Version: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewReader(bytes.NewReader(rawFrame(tt.t, tt.payload)), 0).Read()
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("got %#v, want %#v", m, tt.want)
			}
		})
	}
}
