package transport

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fedq/fedq/protocol"
)

// TestFetchModelNeedsDigest serves one small model over loopback QUIC, hashed and
// then without a digest: a model stream must carry its SHA-256, since the hash is
// what the agent checks against the signed version.
func TestFetchModelNeedsDigest(t *testing.T) {
	weights := []float32{1, -2, 3.5}
	tensors := []protocol.TensorRef{{Info: protocol.TensorInfo{Name: "w", DType: protocol.DTypeF32, Shape: []int{3}}, F32: weights}}
	tests := []struct {
		digest protocol.Digest
		code   protocol.ErrorCode // 0: the download succeeds
	}{
		{protocol.DigestSHA256, 0},
		{protocol.DigestNone, protocol.CodeHashMismatch},
	}
	for _, tc := range tests {
		t.Run(string(tc.digest), func(t *testing.T) {
			client, server := loopbackConns(t, net.IPv4(127, 0, 0, 1))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			served := make(chan error, 1)
			go func() {
				st, err := server.AcceptStream(ctx)
				if err != nil {
					served <- err
					return
				}
				if _, err := protocol.NewReader(st, protocol.MaxFrameSize).Read(); err != nil {
					served <- err
					return
				}
				tw := protocol.NewTensorWriter(protocol.Limits{})
				if err := tw.SetDigest(tc.digest); err != nil {
					served <- err
					return
				}
				_, err = tw.Write(st, tensors, nil)
				_ = st.Close()
				served <- err
			}()
			got := make([]float32, len(weights))
			err := FetchModel(ctx, client, 1, protocol.Hash{}, func(tr *protocol.TensorReader) error {
				return tr.ReadInto(got)
			})
			if serr := <-served; serr != nil {
				t.Fatalf("serving: %v", serr)
			}
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("FetchModel: %v", err)
				}
				if got[0] != 1 || got[1] != -2 || got[2] != 3.5 {
					t.Fatalf("got %v, want %v", got, weights)
				}
				return
			}
			if !errors.Is(err, tc.code) {
				t.Fatalf("FetchModel = %v, want %v", err, tc.code)
			}
			if got[0] != 0 {
				t.Fatal("FetchModel read an undigested model's data")
			}
		})
	}
}
