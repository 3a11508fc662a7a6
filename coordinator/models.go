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
	// Model returns the tensors of version, whose weights must hash to hash unless hash
	// is zero, or a protocol error (CodeNotFound, CodeHashMismatch). The tensors are
	// only read, possibly by many downloads at once.
	Model(version uint64, hash protocol.Hash) (tensors []protocol.TensorRef, meta map[string]string, err error)
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
	tensors, meta, err := (*p).Model(req.Version, req.Hash)
	if err != nil {
		return err
	}
	var size int
	for _, t := range tensors {
		size += 4 * (len(t.F32) + len(t.I32) + len(t.U32))
	}
	_ = st.SetWriteDeadline(time.Now().Add(transport.FirstFrameTimeout + time.Duration(size)*time.Microsecond))
	if _, err := protocol.WriteTensors(st, tensors, meta); err != nil {
		st.CancelWrite(quic.StreamErrorCode(protocol.CodeOf(err).AppErrorCode()))
		return fmt.Errorf("send model %d: %w", req.Version, err)
	}
	return st.Close()
}
