// Package protocol is fedq's wire: the messages agents, the coordinator and
// the admin client exchange, how they are framed on QUIC streams, how
// tensors travel, the error codes, and the ALPN and version rules. It knows
// nothing of rounds, stores or training, and it does not import quic-go: it
// works on io.Reader and io.Writer (a *quic.Stream is both), so it is tested
// over net.Pipe and io.Pipe. PROTOCOL.md in this directory is the
// language-neutral specification; this comment explains the choices.
//
// # Streams and frames
//
// A control frame is one type byte ([MsgType]), a four-byte big-endian
// payload length and a CBOR payload. [Writer] and [WriteMessage] write
// frames; a [Reader] reads them, reusing one buffer that grows only as bytes
// actually arrive and never beyond its limit ([MaxFrameSize] by default).
// A Reader never reads past the end of a frame, so a stream can switch
// between frames and raw bytes. The agent's first bidirectional stream is
// the control stream (Hello, Welcome, heartbeats, task offers...); each model
// download and each update upload is its own stream, opened by the agent and
// begun by a [ModelRequest] or an [UpdateHeader] frame.
//
// # Tensor streams
//
// Tensors are not CBOR: a [TensorHeader] frame lists names, dtypes and
// shapes and the exact byte count; the raw little-endian bytes follow; a
// [TensorTrailer] frame carries the SHA-256 of those bytes. [TensorWriter]
// writes straight from the caller's slices (on little-endian hosts without
// copying), and [TensorReader] reads straight into the caller's slices or
// hands out chunks of one reusable buffer to an accumulator
// ([TensorReader.ReadFunc]), so a model is never held twice and never read
// with io.ReadAll. Raw bytes cost nothing to decode, are what safetensors
// and PyTorch use, and hash the same in every language. Chunking is a local
// I/O choice, not a wire format: QUIC already frames the stream, and a
// sender that fails part way resets the stream (RESET_STREAM) rather than
// sending an in-band abort.
//
// # Why CBOR
//
// Control messages are CBOR (RFC 8949) rather than protobuf:
//
//   - no code generation step: messages are plain Go structs with struct
//     tags, and a Python agent uses cbor2 with dicts;
//   - a standard with decoders in every language, self-describing, so
//     captures can be read with any CBOR tool;
//   - deterministic encoding (RFC 8949 §4.2.1, "core deterministic"): equal
//     values encode to equal bytes, so messages can be hashed and signed
//     (secure-aggregation key advertisements, version metadata);
//   - fxamacker/cbor's decode limits (MaxArrayElements, MaxMapPairs,
//     MaxNestedLevels) and its well-formedness check before allocation, which
//     together with the frame limit enforce the rule "never allocate what the
//     peer claims": a byte string or array can only be as long as the bytes
//     that really arrived in a bounded frame. (v2.10.0 has no separate
//     byte-string length limit; the frame limit is that limit.)
//
// Fields use small integer map keys (struct tag `cbor:"N,keyasint,omitempty"`)
// for compactness; zero values are omitted. Decoding forbids indefinite
// lengths, tags, duplicate map keys and invalid UTF-8, and ignores keys it
// does not know, so a newer peer may add optional fields without a version
// bump. Every decoded message is validated ([Message].Validate) before the
// caller sees it, and every message is validated before it is sent.
//
// # Errors
//
// Protocol failures are [*Error] values carrying an [ErrorCode]; the same
// type is the [MsgError] message that tells the peer, and
// [ErrorCode.AppErrorCode] gives the QUIC application error code for closing
// a stream or connection. Use errors.Is(err, CodeFrameTooLarge) or
// errors.As(err, &pe) to inspect them, and [CodeOf] to pick a close code.
//
// # Versions
//
// [ALPN] "fedq/1" selects this protocol at the TLS handshake; [Version] is
// carried in Hello and Welcome and checked with [CheckVersion]. Adding an
// optional field needs nothing; adding a message type needs a new Version;
// a change old peers cannot ignore needs a new ALPN ("fedq/2").
package protocol
