package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
)

const (
	// ALPN is the TLS application protocol of fedq/1. Both sides must set it
	// in tls.Config.NextProtos; a breaking change of the wire gets a new ALPN
	// (fedq/2), so old and new peers fail the handshake cleanly.
	ALPN = "fedq/1"

	// Version is the highest protocol version this package implements. It
	// is sent in Hello and Welcome; see [NegotiateVersion].
	Version = 1

	// MinVersion is the lowest protocol version this package implements.
	MinVersion = 1

	// MaxFrameSize is the default limit on the payload of one control frame
	// (1 MiB). Readers never allocate more than their limit for a frame,
	// whatever length the peer announces.
	MaxFrameSize = 1 << 20

	// FrameHeaderSize is the size of a frame header: one type byte and a
	// four-byte big-endian payload length.
	FrameHeaderSize = 5

	// initialFrameBuf is the first allocation for a frame buffer; it grows
	// by doubling as bytes actually arrive, never ahead of them.
	initialFrameBuf = 4096
)

// MsgType is the first byte of a frame: it says which message the CBOR
// payload holds. Values are grouped: 0x01–0x0F session, 0x10–0x1F tasks and
// models, 0x20–0x2F secure aggregation, 0x30–0x3F tensor streams, 0x40–0x4F
// administration. A new type needs a new protocol version.
type MsgType uint8

// Message types. See each message's doc comment for direction and timing.
const (
	MsgHello          MsgType = 0x01 // Hello
	MsgWelcome        MsgType = 0x02 // Welcome
	MsgEnrollRequest  MsgType = 0x03 // EnrollRequest
	MsgEnrollResponse MsgType = 0x04 // EnrollResponse
	MsgHeartbeat      MsgType = 0x05 // Heartbeat
	MsgHeartbeatAck   MsgType = 0x06 // HeartbeatAck
	MsgGoodbye        MsgType = 0x07 // Goodbye
	MsgError          MsgType = 0x08 // Error

	MsgTaskOffer    MsgType = 0x10 // TaskOffer
	MsgTaskAccept   MsgType = 0x11 // TaskAccept
	MsgTaskDecline  MsgType = 0x12 // TaskDecline
	MsgTaskCancel   MsgType = 0x13 // TaskCancel
	MsgModelRequest MsgType = 0x14 // ModelRequest
	MsgUpdateHeader MsgType = 0x15 // UpdateHeader
	MsgUpdateAck    MsgType = 0x16 // UpdateAck
	MsgEvalRequest  MsgType = 0x17 // EvalRequest
	MsgEvalResult   MsgType = 0x18 // EvalResult

	MsgSecAggAdvertise      MsgType = 0x20 // SecAggAdvertise
	MsgSecAggRoster         MsgType = 0x21 // SecAggRoster
	MsgSecAggShares         MsgType = 0x22 // SecAggShares
	MsgSecAggUnmaskRequest  MsgType = 0x23 // SecAggUnmaskRequest
	MsgSecAggUnmaskResponse MsgType = 0x24 // SecAggUnmaskResponse

	MsgTensorHeader  MsgType = 0x30 // TensorHeader
	MsgTensorTrailer MsgType = 0x31 // TensorTrailer

	MsgAdminRequest  MsgType = 0x40 // AdminRequest
	MsgAdminResponse MsgType = 0x41 // AdminResponse
)

// msgNames holds the name of every defined message type; never modified.
var msgNames = map[MsgType]string{
	MsgHello: "Hello", MsgWelcome: "Welcome", MsgEnrollRequest: "EnrollRequest",
	MsgEnrollResponse: "EnrollResponse", MsgHeartbeat: "Heartbeat", MsgHeartbeatAck: "HeartbeatAck",
	MsgGoodbye: "Goodbye", MsgError: "Error", MsgTaskOffer: "TaskOffer", MsgTaskAccept: "TaskAccept",
	MsgTaskDecline: "TaskDecline", MsgTaskCancel: "TaskCancel", MsgModelRequest: "ModelRequest",
	MsgUpdateHeader: "UpdateHeader", MsgUpdateAck: "UpdateAck", MsgEvalRequest: "EvalRequest",
	MsgEvalResult: "EvalResult", MsgSecAggAdvertise: "SecAggAdvertise", MsgSecAggRoster: "SecAggRoster",
	MsgSecAggShares: "SecAggShares", MsgSecAggUnmaskRequest: "SecAggUnmaskRequest",
	MsgSecAggUnmaskResponse: "SecAggUnmaskResponse", MsgTensorHeader: "TensorHeader",
	MsgTensorTrailer: "TensorTrailer", MsgAdminRequest: "AdminRequest", MsgAdminResponse: "AdminResponse",
}

// String returns the message's name, or "MsgType(0xNN)" for an undefined
// type.
func (t MsgType) String() string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return "MsgType(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// Message is a control message: a Go struct that encodes to the CBOR
// payload of one frame. All message types in this package are used through
// pointers (*Hello, *Welcome, ...).
type Message interface {
	// Type returns the frame type byte of the message.
	Type() MsgType
	// Validate checks field ranges. [Reader.Read] calls it on every decoded
	// message and [Writer.Write] on every message before sending, so a
	// message that fails it never crosses the wire.
	Validate() error
}

// NewMessage returns a new zero message of type t, or nil if t is not a
// defined message type. It is how a reader maps a frame's type byte to a Go
// type.
func NewMessage(t MsgType) Message {
	switch t {
	case MsgHello:
		return new(Hello)
	case MsgWelcome:
		return new(Welcome)
	case MsgEnrollRequest:
		return new(EnrollRequest)
	case MsgEnrollResponse:
		return new(EnrollResponse)
	case MsgHeartbeat:
		return new(Heartbeat)
	case MsgHeartbeatAck:
		return new(HeartbeatAck)
	case MsgGoodbye:
		return new(Goodbye)
	case MsgError:
		return new(Error)
	case MsgTaskOffer:
		return new(TaskOffer)
	case MsgTaskAccept:
		return new(TaskAccept)
	case MsgTaskDecline:
		return new(TaskDecline)
	case MsgTaskCancel:
		return new(TaskCancel)
	case MsgModelRequest:
		return new(ModelRequest)
	case MsgUpdateHeader:
		return new(UpdateHeader)
	case MsgUpdateAck:
		return new(UpdateAck)
	case MsgEvalRequest:
		return new(EvalRequest)
	case MsgEvalResult:
		return new(EvalResult)
	case MsgSecAggAdvertise:
		return new(SecAggAdvertise)
	case MsgSecAggRoster:
		return new(SecAggRoster)
	case MsgSecAggShares:
		return new(SecAggShares)
	case MsgSecAggUnmaskRequest:
		return new(SecAggUnmaskRequest)
	case MsgSecAggUnmaskResponse:
		return new(SecAggUnmaskResponse)
	case MsgTensorHeader:
		return new(TensorHeader)
	case MsgTensorTrailer:
		return new(TensorTrailer)
	case MsgAdminRequest:
		return new(AdminRequest)
	case MsgAdminResponse:
		return new(AdminResponse)
	}
	return nil
}

// normFrameLimit turns a caller's frame limit into the one used: values
// <= 0 mean MaxFrameSize, and no limit exceeds what 4 bytes can express.
func normFrameLimit(n int) int {
	if n <= 0 {
		return MaxFrameSize
	}
	return int(min(uint64(n), math.MaxUint32))
}

// Writer writes framed messages to a stream, reusing one encoding buffer.
// A Writer is not safe for concurrent use; give each stream one writer and
// one goroutine that writes.
type Writer struct {
	w     io.Writer
	limit int
	buf   bytes.Buffer
}

// NewWriter returns a Writer that refuses to send frames whose payload is
// over maxFrame bytes (<= 0 means [MaxFrameSize]), so an oversized message
// fails here rather than at the peer.
func NewWriter(w io.Writer, maxFrame int) *Writer {
	return &Writer{w: w, limit: normFrameLimit(maxFrame)}
}

// Write validates m, encodes it and writes the whole frame with a single
// Write call on the underlying writer.
func (w *Writer) Write(m Message) error {
	b, err := appendFrame(&w.buf, m, w.limit)
	if err != nil {
		return err
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("protocol: writing %s frame (%d bytes): %w", m.Type(), len(b), err)
	}
	return nil
}

// WriteMessage validates m and writes it as one frame to w, with the
// default frame limit. Use a [Writer] on hot paths to reuse the buffer.
func WriteMessage(w io.Writer, m Message) error {
	var buf bytes.Buffer
	b, err := appendFrame(&buf, m, MaxFrameSize)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("protocol: writing %s frame (%d bytes): %w", m.Type(), len(b), err)
	}
	return nil
}

// isNil reports whether m is nil or a nil pointer.
func isNil(m Message) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// appendFrame resets buf and encodes m into it as a complete frame.
func appendFrame(buf *bytes.Buffer, m Message, limit int) ([]byte, error) {
	if isNil(m) {
		return nil, NewError(CodeInternal, "cannot write a nil message; pass a pointer to a message struct")
	}
	if err := m.Validate(); err != nil {
		return nil, wrapError(CodeInvalid, err, "refusing to send an invalid %s; fix the field named below", m.Type())
	}
	return encodeFrame(buf, m, limit)
}

// encodeFrame resets buf and encodes m into it as a complete frame, without
// validating m.
func encodeFrame(buf *bytes.Buffer, m Message, limit int) ([]byte, error) {
	buf.Reset()
	var hdr [FrameHeaderSize]byte
	buf.Write(hdr[:])
	if err := wire.enc.MarshalToBuffer(m, buf); err != nil {
		return nil, wrapError(CodeInternal, err, "encoding %s", m.Type())
	}
	b := buf.Bytes()
	n := len(b) - FrameHeaderSize
	if n > limit {
		return nil, NewError(CodeFrameTooLarge,
			"%s encodes to %d bytes, over the %d-byte frame limit; send bulk data as a tensor stream or raise the limit on both ends",
			m.Type(), n, limit)
	}
	b[0] = byte(m.Type())
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b, nil
}

// Reader reads framed messages from a stream. It reuses one frame buffer,
// grown (by doubling, only as bytes actually arrive) up to its limit, and it
// never reads past the end of a frame, so after any Read the same io.Reader
// can be handed to a [TensorReader] or read directly.
//
// Errors: io.EOF when the stream ends cleanly between frames; an [*Error]
// with CodeFrameTooLarge, or CodeMalformed wrapping io.ErrUnexpectedEOF for a
// stream that ends mid-frame — after these the Reader keeps returning the
// same error; an [*Error] with CodeUnknownMessage, CodeMalformed or
// CodeInvalid for a complete frame that could not be used — the frame has
// been consumed and the next Read continues with the next frame. Errors of
// the underlying reader are returned wrapped, and are sticky too.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	r     io.Reader
	limit int
	hdr   [FrameHeaderSize]byte
	buf   []byte
	err   error // sticky: the stream can no longer be read frame by frame
}

// NewReader returns a Reader of frames from r whose payloads may be at most
// maxFrame bytes (<= 0 means [MaxFrameSize]).
func NewReader(r io.Reader, maxFrame int) *Reader {
	return &Reader{r: r, limit: normFrameLimit(maxFrame)}
}

// Read reads the next frame and returns its decoded, validated message.
func (r *Reader) Read() (Message, error) {
	t, payload, err := r.readFrame()
	if err != nil {
		return nil, err
	}
	return decodeMessage(t, payload)
}

// readFrame reads one whole frame into the reusable buffer.
func (r *Reader) readFrame() (MsgType, []byte, error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	t, payload, buf, err := readFrame(r.r, r.hdr[:], r.buf, r.limit)
	r.buf = buf
	if err != nil {
		r.err = err
		return 0, nil, err
	}
	return t, payload, nil
}

// readFrame reads a frame header into hdr and the payload into buf (grown
// as needed, returned for reuse), enforcing the payload limit before
// reading or allocating anything for the payload.
func readFrame(r io.Reader, hdr, buf []byte, limit int) (MsgType, []byte, []byte, error) {
	n, err := io.ReadFull(r, hdr[:FrameHeaderSize])
	switch {
	case err == io.EOF:
		return 0, nil, buf, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return 0, nil, buf, wrapError(CodeMalformed, io.ErrUnexpectedEOF,
			"stream ended inside a frame header (%d of %d bytes); the peer closed or crashed mid-message", n, FrameHeaderSize)
	case err != nil:
		return 0, nil, buf, fmt.Errorf("protocol: reading frame header: %w", err)
	}
	t := MsgType(hdr[0])
	size := binary.BigEndian.Uint32(hdr[1:FrameHeaderSize])
	if uint64(size) > uint64(limit) {
		return 0, nil, buf, NewError(CodeFrameTooLarge,
			"%s frame announces %d payload bytes, over the %d-byte limit; the stream is unusable, close it (if the peer is trusted, raise the limit)",
			t, size, limit)
	}
	buf, got, err := readGrow(r, buf, int(size))
	if err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, buf, wrapError(CodeMalformed, io.ErrUnexpectedEOF,
				"stream ended inside a %s frame (%d of %d payload bytes); the peer closed or crashed mid-message", t, got, size)
		}
		return 0, nil, buf, fmt.Errorf("protocol: reading %s frame payload: %w", t, err)
	}
	return t, buf[:size], buf, nil
}

// readGrow reads exactly n bytes into buf, reusing its capacity. When buf
// is too small it grows by doubling, starting at initialFrameBuf, and only
// after the previous allocation has been filled with bytes that really
// arrived: a peer that announces a large frame and sends nothing costs at
// most initialFrameBuf bytes. It returns the buffer (to keep for reuse) and
// how many bytes were read.
func readGrow(r io.Reader, buf []byte, n int) ([]byte, int, error) {
	if cap(buf) >= n {
		got, err := io.ReadFull(r, buf[:n])
		return buf[:n], got, err
	}
	buf = buf[:cap(buf)]
	got := 0
	for got < n {
		if got == len(buf) {
			nb := make([]byte, min(max(2*len(buf), initialFrameBuf), n))
			copy(nb, buf[:got])
			buf = nb
		}
		k, err := io.ReadFull(r, buf[got:])
		got += k
		if err != nil {
			return buf, got, err
		}
	}
	return buf[:n], n, nil
}

// decodeMessage decodes and validates the payload of a frame of type t.
func decodeMessage(t MsgType, payload []byte) (Message, error) {
	m := NewMessage(t)
	if m == nil {
		return nil, NewError(CodeUnknownMessage,
			"frame type 0x%02x is not defined in fedq protocol version %d; the peer is newer or broken (frame skipped)", uint8(t), Version)
	}
	if len(payload) == 0 {
		return nil, NewError(CodeMalformed, "%s frame has an empty payload; a message is at least an empty CBOR map (0xa0)", t)
	}
	if err := wire.dec.Unmarshal(payload, m); err != nil {
		// The CBOR error is kept as text, not wrapped: it may wrap io.EOF,
		// which callers must not mistake for the end of the stream.
		return nil, NewError(CodeMalformed, "decoding %s payload (%d bytes): %v", t, len(payload), err)
	}
	if err := m.Validate(); err != nil {
		return nil, wrapError(CodeInvalid, err, "received an invalid %s", t)
	}
	return m, nil
}

// Expect is a helper for request/response exchanges: it passes through a
// read error, turns a received [*Error] message into the returned error, and
// returns a [CodeProtocol] error if the message is of another type than T.
//
//	w, err := protocol.Expect[*protocol.Welcome](rd.Read())
func Expect[T Message](m Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if isNil(m) {
		return zero, NewError(CodeProtocol, "expected %s, received no message", zero.Type())
	}
	if v, ok := m.(T); ok {
		return v, nil
	}
	if e, ok := m.(*Error); ok {
		return zero, e
	}
	return zero, NewError(CodeProtocol, "expected %s, received %s", zero.Type(), m.Type())
}
