package coordinator

import (
	"fmt"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// ModelSource serves model versions to agents' model-download streams.
type ModelSource interface {
	// Model returns the tensors of version and their hash (the SHA-256 of the tensor
	// stream's raw bytes, which is the version's hash), or a protocol error
	// (CodeNotFound; CodeHashMismatch when hash is not zero and differs). The tensors
	// are only read, possibly by many downloads at once; the hash is sent as the
	// stream's trailer without hashing the bytes again.
	Model(version uint64, hash protocol.Hash) (tensors []protocol.TensorRef, meta map[string]string, sum protocol.Hash, err error)
}

// SetModels sets what model-download streams are served from (nil: nothing).
func (s *Server) SetModels(src ModelSource) {
	if src == nil {
		s.models.Store(nil)
		return
	}
	s.models.Store(&src)
}

// serveModel answers a ModelRequest with a tensor stream. Writes have a deadline that
// grows with the model's size at a floor rate of 1 MB/s, so a reader that stalls cannot
// hold the stream forever.
func (s *Server) serveModel(st *quic.Stream, req *protocol.ModelRequest) error {
	p := s.models.Load()
	if p == nil {
		return protocol.NewError(protocol.CodeNotFound, "no model versions yet")
	}
	tensors, meta, sum, err := (*p).Model(req.Version, req.Hash)
	if err != nil {
		return err
	}
	var size int
	for _, t := range tensors {
		size += 4 * (len(t.F32) + len(t.I32) + len(t.U32))
	}
	_ = st.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout + time.Duration(size)*time.Microsecond))
	if err := protocol.NewTensorWriter(protocol.Limits{}).WriteKnown(st, tensors, meta, sum); err != nil {
		st.CancelWrite(quic.StreamErrorCode(protocol.CodeOf(err).AppErrorCode()))
		return fmt.Errorf("send model %d: %w", req.Version, err)
	}
	return st.Close()
}
