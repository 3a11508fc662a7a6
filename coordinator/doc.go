// Package coordinator is fedq's coordinator: it accepts agents' QUIC connections,
// enrolls new agents with one-time tokens, keeps the sessions of connected agents
// (capabilities, last seen, heartbeats), answers admin clients, and — in the issues to
// come — runs rounds of training over them and keeps model versions.
//
// Connection handling, in short (protocol/PROTOCOL.md is the contract):
//
//   - One UDP socket; every agent keeps one long-lived connection and opens its streams.
//   - The client certificate says what a connection may do: none → only EnrollRequest;
//     an agent certificate whose serial is the one on record and not revoked → a
//     session, begun by Hello/Welcome on the control stream; an admin certificate →
//     AdminRequest streams.
//   - Nothing the peer does can hold resources forever: the first frame of every stream
//     must arrive within transport.FirstFrameTimeout, a session that sends nothing for
//     three heartbeat intervals is closed, streams per connection are bounded by QUIC
//     flow control (transport.MaxStreams), and frames by the protocol's limits.
//   - A new session of an agent replaces its old one, which is closed with
//     session-replaced; revoking an agent closes its session at once.
package coordinator
