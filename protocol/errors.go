package protocol

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrorCode classifies a protocol failure. The same code travels in an
// [Error] message, in [Goodbye] and [TaskDecline], and — through
// [ErrorCode.AppErrorCode] — as the QUIC application error code of a
// CONNECTION_CLOSE, RESET_STREAM or STOP_SENDING frame. Codes are stable: a
// code, once published, keeps its number and meaning in every protocol
// version.
//
// ErrorCode implements error so that a code can be the target of
// [errors.Is]: errors.Is(err, CodeFrameTooLarge) reports whether err is (or
// wraps) an [*Error] with that code.
type ErrorCode uint16

// Error codes. The numeric ranges group them: 1–15 wire and framing
// problems, 16–31 identity and enrollment, 32–47 task and model
// consistency, 48–63 the peer's own state. [PROTOCOL.md] lists them with
// their retryability.
const (
	// CodeNone means "no error". It is only valid in [Goodbye] (a normal
	// shutdown) and as QUIC application error 0.
	CodeNone ErrorCode = 0

	// CodeProtocol: the peer broke the message sequence (for example a
	// TaskAccept before Welcome, or a second Hello).
	CodeProtocol ErrorCode = 1
	// CodeUnsupportedVersion: the peer speaks a protocol version this side
	// does not implement.
	CodeUnsupportedVersion ErrorCode = 2
	// CodeFrameTooLarge: a frame announced a payload over the receiver's
	// limit; the stream cannot be resynchronised.
	CodeFrameTooLarge ErrorCode = 3
	// CodeMalformed: bytes that are not a well-formed frame, CBOR item or
	// tensor stream (including a stream that ends mid-frame).
	CodeMalformed ErrorCode = 4
	// CodeLimitExceeded: a well-formed message or tensor header exceeds a
	// configured limit (too many tensors, too many bytes, too many dims).
	CodeLimitExceeded ErrorCode = 5
	// CodeUnknownMessage: a frame with a message type this version does not
	// define.
	CodeUnknownMessage ErrorCode = 6
	// CodeInvalid: a message decoded but a field is out of range (see each
	// message's Validate method).
	CodeInvalid ErrorCode = 7

	// CodeUnauthenticated: the connection carries no verified agent
	// certificate and the request needs one.
	CodeUnauthenticated ErrorCode = 16
	// CodeTokenInvalid: the enrollment token is unknown.
	CodeTokenInvalid ErrorCode = 17
	// CodeTokenExpired: the enrollment token is past its expiry.
	CodeTokenExpired ErrorCode = 18
	// CodeTokenUsed: the one-time enrollment token was already used.
	CodeTokenUsed ErrorCode = 19
	// CodeRevoked: the agent's certificate has been revoked.
	CodeRevoked ErrorCode = 20
	// CodePermissionDenied: the identity is valid but not allowed to do this
	// (for example an agent certificate sending an admin request).
	CodePermissionDenied ErrorCode = 21
	// CodeSessionReplaced: a newer connection of the same agent took over;
	// the old one is closed with this code.
	CodeSessionReplaced ErrorCode = 22

	// CodeBusy: the peer cannot take this work now; try later.
	CodeBusy ErrorCode = 32
	// CodeStaleBase: an update or request names a model version other than
	// the one the round is using.
	CodeStaleBase ErrorCode = 33
	// CodeHashMismatch: received bytes do not match the announced SHA-256.
	CodeHashMismatch ErrorCode = 34
	// CodeNotFound: the model version, task or round named does not exist.
	CodeNotFound ErrorCode = 35
	// CodeDeadlineExceeded: the work or message arrived after its deadline.
	CodeDeadlineExceeded ErrorCode = 36
	// CodeCancelled: the task or round was cancelled by the coordinator.
	CodeCancelled ErrorCode = 37
	// CodeUnavailable: the agent lacks what the task needs (dataset,
	// backend, feature).
	CodeUnavailable ErrorCode = 38

	// CodeInternal: a bug or unexpected failure inside the peer.
	CodeInternal ErrorCode = 48
	// CodeShuttingDown: the peer is shutting down; reconnect later.
	CodeShuttingDown ErrorCode = 49
)

// codeInfo is the immutable description of one error code.
type codeInfo struct {
	name      string
	retryable bool
}

// codeTable describes every defined code. It is never written after
// initialisation.
var codeTable = map[ErrorCode]codeInfo{
	CodeNone:               {"none", false},
	CodeProtocol:           {"protocol", false},
	CodeUnsupportedVersion: {"unsupported-version", false},
	CodeFrameTooLarge:      {"frame-too-large", false},
	CodeMalformed:          {"malformed", false},
	CodeLimitExceeded:      {"limit-exceeded", false},
	CodeUnknownMessage:     {"unknown-message", false},
	CodeInvalid:            {"invalid", false},
	CodeUnauthenticated:    {"unauthenticated", false},
	CodeTokenInvalid:       {"token-invalid", false},
	CodeTokenExpired:       {"token-expired", false},
	CodeTokenUsed:          {"token-used", false},
	CodeRevoked:            {"revoked", false},
	CodePermissionDenied:   {"permission-denied", false},
	CodeSessionReplaced:    {"session-replaced", false},
	CodeBusy:               {"busy", true},
	CodeStaleBase:          {"stale-base", false},
	CodeHashMismatch:       {"hash-mismatch", true},
	CodeNotFound:           {"not-found", false},
	CodeDeadlineExceeded:   {"deadline-exceeded", false},
	CodeCancelled:          {"cancelled", false},
	CodeUnavailable:        {"unavailable", false},
	CodeInternal:           {"internal", true},
	CodeShuttingDown:       {"shutting-down", true},
}

// String returns the code's stable kebab-case name, or "code-N" for a code
// this version does not define.
func (c ErrorCode) String() string {
	if info, ok := codeTable[c]; ok {
		return info.name
	}
	return "code-" + strconv.Itoa(int(c))
}

// Error makes ErrorCode usable as an [errors.Is] target; see [ErrorCode].
// It returns the same as String, so that fmt prints a code as its name.
func (c ErrorCode) Error() string { return c.String() }

// Known reports whether this version of the package defines the code. An
// unknown code received from a newer peer should be treated like
// [CodeInternal].
func (c ErrorCode) Known() bool {
	_, ok := codeTable[c]
	return ok
}

// Retryable reports the default retryability of the code: whether the same
// request may succeed if sent again later, unchanged. An [Error] message
// carries its own Retryable flag, which takes precedence.
func (c ErrorCode) Retryable() bool { return codeTable[c].retryable }

// AppErrorCode returns the QUIC application error code for c, for use with
// quic-go's Conn.CloseWithError, Stream.CancelRead and Stream.CancelWrite.
// The mapping is the identity: application error 0 is [CodeNone] (a
// graceful close) and every other code is its own number. Use
// [CodeFromAppError] for the reverse direction.
func (c ErrorCode) AppErrorCode() uint64 { return uint64(c) }

// CodeFromAppError maps a QUIC application error code received from the
// peer back to an [ErrorCode]. Values that do not fit an ErrorCode map to
// [CodeProtocol], since a fedq/1 peer never sends them.
func CodeFromAppError(v uint64) ErrorCode {
	if v > 0xFFFF {
		return CodeProtocol
	}
	return ErrorCode(v)
}

// Error is both the protocol's error value and the [MsgError] message that
// carries a failure to the peer. Functions in this package return *Error for
// every protocol violation, so callers can use [errors.As] to get the code,
// or errors.Is(err, CodeX) to test for one. Msg is human-readable; programs
// must decide on Code (and Retryable), never on Msg.
//
// Direction: either. When: in reply to a request that failed (on the stream
// that carried the request), or on the control stream before closing it.
type Error struct {
	// Code classifies the failure; never CodeNone.
	Code ErrorCode `cbor:"1,keyasint,omitempty"`
	// Msg says what went wrong and, where it can, what to do about it.
	// At most MaxErrorMessageLen bytes.
	Msg string `cbor:"2,keyasint,omitempty"`
	// Retryable says whether sending the same request again later may
	// succeed.
	Retryable bool `cbor:"3,keyasint,omitempty"`

	// cause is the local error that produced this one; it is not sent.
	cause error
}

// NewError returns an *Error with the code's default retryability and a
// message formatted from format and args.
func NewError(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Retryable: code.Retryable()}
}

// wrapError returns an *Error that wraps cause (reachable through
// errors.Is/As) with a message formatted from format and args.
func wrapError(code ErrorCode, cause error, format string, args ...any) *Error {
	e := NewError(code, format, args...)
	e.cause = cause
	return e
}

// Type implements [Message].
func (*Error) Type() MsgType { return MsgError }

// Error implements the error interface.
func (e *Error) Error() string {
	s := "fedq protocol error " + e.Code.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap returns the local cause of the error, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an [ErrorCode] equal to e.Code, or an *Error
// with the same code. It lets errors.Is(err, CodeFrameTooLarge) work.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case ErrorCode:
		return e.Code == t
	case *Error:
		return t != nil && e.Code == t.Code
	}
	return false
}

// Validate checks the fields of an Error message.
func (e *Error) Validate() error {
	if e.Code == CodeNone {
		return errors.New("Error.Code is 0 (none); an Error message must carry a failure code")
	}
	return checkLen("Error.Msg", e.Msg, MaxErrorMessageLen)
}

// CodeOf returns the code of the first [*Error] in err's chain, [CodeNone]
// for a nil err, and [CodeInternal] for any other error. The transport layer
// uses it to choose the QUIC application error code when it aborts a stream
// or connection because of err.
func CodeOf(err error) ErrorCode {
	if err == nil {
		return CodeNone
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return CodeInternal
}

// CheckVersion returns nil if this package implements protocol version v
// (MinVersion ≤ v ≤ Version), and otherwise an *Error with
// [CodeUnsupportedVersion] that says which side to upgrade. The agent calls
// it on Welcome.ProtocolVersion.
func CheckVersion(v uint32) error {
	_, err := NegotiateVersion(v, v)
	return err
}

// NegotiateVersion picks the protocol version of a session: the highest
// version in both the peer's range [peerMin, peerMax] and this package's
// [MinVersion, Version]. A peerMin of 0 means peerMax. The coordinator calls
// it with Hello.MinProtocolVersion and Hello.ProtocolVersion and puts the
// result in Welcome.ProtocolVersion; if the ranges do not overlap it returns
// an *Error with [CodeUnsupportedVersion] saying which side to upgrade.
func NegotiateVersion(peerMin, peerMax uint32) (uint32, error) {
	if peerMin == 0 || peerMin > peerMax {
		peerMin = peerMax
	}
	switch {
	case peerMax < MinVersion:
		return 0, NewError(CodeUnsupportedVersion,
			"peer speaks fedq protocol versions %d..%d, this build speaks %d..%d; upgrade the peer",
			peerMin, peerMax, MinVersion, Version)
	case peerMin > Version:
		return 0, NewError(CodeUnsupportedVersion,
			"peer speaks fedq protocol versions %d..%d, this build speaks %d..%d; upgrade this side",
			peerMin, peerMax, MinVersion, Version)
	}
	return min(peerMax, Version), nil
}
