package coordinator

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// TestStreamCreditWithLateFIN makes many more requests on one admin connection than the
// coordinator grants concurrent streams (transport.MaxStreams), each sending its FIN
// only after the reply has arrived — what happens on a loaded machine when the FIN
// leaves in a later packet than the request. Every stream must complete on the
// coordinator's side and give the client its credit back; before EndRead, the 17th
// request waited forever for a stream.
func TestStreamCreditWithLateFIN(t *testing.T) {
	dir := testDir(t)
	srv := listenOn(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	adm, err := DialAdmin(ctx, dir, srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	body, _ := json.Marshal(struct{}{})
	for i := range 3 * transport.MaxStreams {
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := adm.conn.OpenStreamSync(octx)
		ocancel()
		if err != nil {
			t.Fatalf("request %d: no stream: %v", i, err)
		}
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if err := protocol.WriteMessage(st, &protocol.AdminRequest{Method: MethodStatus, Body: body}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		m, err := protocol.NewReader(st, protocol.MaxFrameSize).Read()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if _, ok := m.(*protocol.AdminResponse); !ok {
			t.Fatalf("request %d: reply %s", i, m.Type())
		}
		_ = st.Close() // the FIN, well after the request
		transport.EndRead(st)
	}
	// The ordinary client keeps working on the same connection.
	if _, err := adm.Status(ctx); err != nil {
		t.Fatal(err)
	}
}

// testDir is a coordinator directory with a fresh CA.
func testDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.Init(dir, ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// listenOn opens a coordinator on dir, on a free loopback port, with logs discarded.
func listenOn(t *testing.T, dir string) *Server {
	t.Helper()
	srv, err := Listen(Config{Dir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
