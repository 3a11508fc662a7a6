package coordinator_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/protocol"
)

// TestAdminRejectsMalformedBodies sends each admin method a body it cannot use: every
// one is refused with a protocol error naming the problem, and the coordinator keeps
// serving (the last call succeeds on the same connection).
func TestAdminRejectsMalformedBodies(t *testing.T) {
	c := newCluster(t)
	adm := c.admin()
	ctx := context.Background()
	for _, tc := range []struct {
		method string
		body   any
		want   protocol.ErrorCode
	}{
		{coordinator.MethodVersionsList, []int{1}, protocol.CodeInvalid},
		{coordinator.MethodVersionsList, json.RawMessage(`{"task": 5}`), protocol.CodeInvalid},
		{coordinator.MethodVersionGet, json.RawMessage(`"latest"`), protocol.CodeInvalid},
		{coordinator.MethodRoundStart, json.RawMessage(`{"rounds": 3}`), protocol.CodeInvalid},
		{coordinator.MethodRoundStart, json.RawMessage(`{"task": "t", "rounds": "many"}`), protocol.CodeInvalid},
		{coordinator.MethodRoundStart, json.RawMessage(`{"task": "nope", "rounds": 2}`), protocol.CodeNotFound},
		{coordinator.MethodAgentsRevoke, json.RawMessage(`{}`), protocol.CodeInvalid},
		{coordinator.MethodTaskSubmit, json.RawMessage(`{"name": "t", "model": "2nn"}`), protocol.CodeInvalid},
		{coordinator.MethodTaskSubmit, json.RawMessage(`[]`), protocol.CodeInvalid},
	} {
		var out json.RawMessage
		err := adm.Call(ctx, tc.method, tc.body, &out)
		if protocol.CodeOf(err) != tc.want || err.Error() == "" {
			t.Errorf("%s %s: %v (code %v), want code %v", tc.method, tc.body, err, protocol.CodeOf(err), tc.want)
		}
	}
	if _, err := adm.Versions(ctx, ""); err != nil {
		t.Fatalf("a well-formed call after the bad ones: %v", err)
	}
}
