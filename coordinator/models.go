package coordinator

import (
	"fmt"
	"io"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// ModelSource serves model versions to agents' model-download streams.
type ModelSource interface {
	// Model opens version for streaming, or returns a protocol error (CodeNotFound;
	// CodeHashMismatch when hash is not zero and differs). Many downloads may stream
	// at once, each from its own ModelStream.
	Model(version uint64, hash protocol.Hash) (*ModelStream, error)
}

// ModelStream is one download's view of a model version.
type ModelStream struct {
	// Layout lists the tensors, in stream order.
	Layout []protocol.TensorInfo
	// Meta is the stream header's metadata (the signed version header).
	Meta map[string]string
	// Sum is the SHA-256 of the raw bytes — the version's hash — sent as the trailer
	// without hashing the bytes again: the receiver checks it.
	Sum protocol.Hash
	// Data yields the raw bytes: the tensors in order, little-endian, as a blob file
	// holds them. The server closes it.
	Data io.ReadCloser
}

// SetModels sets what model-download streams are served from (nil: nothing).
func (s *Server) SetModels(src ModelSource) {
	if src == nil {
		s.models.Store(nil)
		return
	}
	s.models.Store(&src)
}

// serveModel answers a ModelRequest with a tensor stream. Each write has a deadline of
// FirstFrameTimeout, so a reader that stalls cannot hold the stream forever, while one
// that is slow because a hundred agents download at once still gets the model.
func (s *Server) serveModel(st *quic.Stream, req *protocol.ModelRequest) error {
	p := s.models.Load()
	if p == nil {
		return protocol.NewError(protocol.CodeNotFound, "no model versions yet")
	}
	ms, err := (*p).Model(req.Version, req.Hash)
	if err != nil {
		return err
	}
	defer ms.Data.Close()
	w := transport.IdleWriter{Stream: st, Idle: transport.FirstFrameTimeout}
	if err := protocol.NewTensorWriter(protocol.Limits{}).WriteRaw(w, ms.Layout, ms.Meta, ms.Sum, ms.Data); err != nil {
		st.CancelWrite(quic.StreamErrorCode(protocol.CodeOf(err).AppErrorCode()))
		return fmt.Errorf("send model %d: %w", req.Version, err)
	}
	err = st.Close()
	transport.EndRead(st)
	return err
}
