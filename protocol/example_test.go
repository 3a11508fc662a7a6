package protocol_test

import (
	"errors"
	"fmt"
	"net"

	"github.com/fedq/fedq/protocol"
)

// Example_modelDownload shows a model-download stream: the agent sends a
// ModelRequest, the coordinator answers with a tensor stream, and the agent
// reads it straight into its own slices and checks the hash.
func Example_modelDownload() {
	agent, coord := net.Pipe() // stands in for a *quic.Stream

	// Coordinator side.
	go func() {
		defer coord.Close()
		req, err := protocol.Expect[*protocol.ModelRequest](protocol.NewReader(coord, 0).Read())
		if err != nil {
			return
		}
		if req.Version != 4 {
			_ = protocol.WriteMessage(coord, protocol.NewError(protocol.CodeNotFound, "no version %d", req.Version))
			return
		}
		weights := []float32{0.5, -1, 2, 0.25, 1, 0}
		bias := []float32{0.1, 0.2}
		_, _ = protocol.WriteTensors(coord, []protocol.TensorRef{
			{Info: protocol.TensorInfo{Name: "fc.weight", DType: protocol.DTypeF32, Shape: []int{2, 3}}, F32: weights},
			{Info: protocol.TensorInfo{Name: "fc.bias", DType: protocol.DTypeF32, Shape: []int{2}}, F32: bias},
		}, map[string]string{"version": "4"})
	}()

	// Agent side.
	defer agent.Close()
	if err := protocol.WriteMessage(agent, &protocol.ModelRequest{Version: 4}); err != nil {
		fmt.Println(err)
		return
	}
	tr, err := protocol.NewTensorReader(agent, protocol.Limits{})
	var pe *protocol.Error
	if errors.As(err, &pe) {
		fmt.Println("coordinator refused:", pe.Code)
		return
	}
	for {
		info, ok := tr.Next()
		if !ok {
			break
		}
		dst := make([]float32, info.NumElements())
		if err := tr.ReadInto(dst); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(info.Name, info.Shape, dst)
	}
	if err := tr.Finish(); err != nil { // verifies the SHA-256 trailer
		fmt.Println(err)
		return
	}
	fmt.Println("verified, version", tr.Header().Meta["version"])
	// Output:
	// fc.weight [2 3] [0.5 -1 2 0.25 1 0]
	// fc.bias [2] [0.1 0.2]
	// verified, version 4
}

// ExampleErrorCode shows how callers test for a protocol error and choose
// the QUIC code to close a stream with.
func ExampleErrorCode() {
	err := fmt.Errorf("agent: downloading model: %w", protocol.NewError(protocol.CodeHashMismatch, "trailer differs"))
	fmt.Println(errors.Is(err, protocol.CodeHashMismatch))
	code := protocol.CodeOf(err)
	fmt.Println(code, code.AppErrorCode(), code.Retryable())
	// Output:
	// true
	// hash-mismatch 34 true
}
