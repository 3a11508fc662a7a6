package coordinator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

func quietLogger() *slog.Logger {
	if os.Getenv("FEDQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cluster is a coordinator under test, on 127.0.0.1.
type cluster struct {
	t         testing.TB
	dir       string
	addr      string
	heartbeat time.Duration
	srv       *coordinator.Server
	cancel    context.CancelFunc
	done      chan error
	shift     atomic.Int64 // added to the coordinator's clock
	// observe, if set before start, sees every update the coordinator receives.
	observe  func(agent string, hdr *protocol.UpdateHeader, plain []float32, masked []uint32)
	labelled map[string]*dataset.Dataset
	logger   *slog.Logger // if set before start, the coordinator's logger
}

func newCluster(t testing.TB) *cluster { return newClusterHB(t, time.Second) }

func newClusterHB(t testing.TB, heartbeat time.Duration) *cluster {
	return newClusterWith(t, func(c *cluster) { c.heartbeat = heartbeat })
}

// newClusterWith is newCluster with set applied to the cluster before it starts (to set
// the heartbeat, an update observer, labelled sets).
func newClusterWith(t testing.TB, set func(*cluster)) *cluster {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.Init(dir, ca.InitOptions{Addr: "127.0.0.1:4433"}); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, addr: "127.0.0.1:0", heartbeat: time.Second}
	set(c)
	c.start()
	c.addr = c.srv.Addr().String()
	t.Cleanup(c.stop)
	return c
}

// start runs the coordinator on c.addr.
func (c *cluster) start() {
	c.t.Helper()
	logger := c.logger
	if logger == nil {
		logger = quietLogger()
	}
	srv, err := coordinator.Listen(coordinator.Config{Dir: c.dir, Listen: c.addr, Heartbeat: c.heartbeat,
		Logger: logger, Now: func() time.Time { return time.Now().Add(time.Duration(c.shift.Load())) }, ObserveUpdate: c.observe, Labelled: c.labelled})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.srv, c.cancel, c.done = srv, cancel, make(chan error, 1)
	go func() { c.done <- srv.Serve(ctx) }()
}

// stop shuts the coordinator down and waits for it.
func (c *cluster) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	if err := <-c.done; err != nil {
		c.t.Errorf("Serve: %v", err)
	}
	c.cancel = nil
}

func (c *cluster) token(name string, ttl time.Duration) string {
	c.t.Helper()
	auth, err := ca.Load(c.dir)
	if err != nil {
		c.t.Fatal(err)
	}
	tok, _, err := auth.CreateToken(name, ttl, c.addr, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

func (c *cluster) enroll(name string) *agent.Identity {
	c.t.Helper()
	id, err := agent.Enroll(context.Background(), c.t.TempDir(), c.token(name, time.Hour), agent.EnrollOptions{Name: name})
	if err != nil {
		c.t.Fatalf("enroll %s: %v", name, err)
	}
	return id
}

func (c *cluster) admin() *coordinator.AdminClient {
	c.t.Helper()
	cl, err := coordinator.DialAdmin(context.Background(), c.dir, c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// blobsVersions returns the task blobs' versions, failing the test unless there are
// want of them.
func blobsVersions(t testing.TB, adm *coordinator.AdminClient, want int) []store.Version {
	t.Helper()
	vs, err := adm.Versions(context.Background(), "blobs")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != want {
		t.Fatalf("%d versions, want %d", len(vs), want)
	}
	return vs
}

// runningAgent is a daemon under test.
type runningAgent struct {
	d      *agent.Daemon
	events chan agent.Event
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t testing.TB, id *agent.Identity, tr *quic.Transport) *runningAgent {
	t.Helper()
	ra := &runningAgent{events: make(chan agent.Event, 64), done: make(chan error, 1)}
	d, err := agent.New(agent.Config{Identity: id, SoftwareVersion: "test",
		Capabilities: protocol.Capabilities{Backend: "cpu", Datasets: []protocol.DatasetInfo{{Name: "mnist", Examples: 600, Labelled: 600, Classes: 10}}},
		Backoff:      agent.Backoff{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.2},
		Logger:       quietLogger(), Transport: tr,
		OnEvent: func(e agent.Event) {
			select {
			case ra.events <- e:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra.d, ra.cancel = d, cancel
	go func() { ra.done <- d.Run(ctx) }()
	t.Cleanup(func() { ra.cancel(); <-ra.done })
	return ra
}

// wait returns the next event of the given kind, failing after timeout.
func (ra *runningAgent) wait(t testing.TB, kind agent.EventKind, timeout time.Duration) agent.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-ra.events:
			if e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no event %d within %v", kind, timeout)
		}
	}
}

func TestEnrollConnectAndLeave(t *testing.T) {
	c := newCluster(t)
	id := c.enroll("site-a")
	if id.State.ID != "site-a" {
		t.Fatalf("agent ID %q", id.State.ID)
	}
	ra := startAgent(t, id, nil)
	e := ra.wait(t, agent.Connected, 10*time.Second)
	agents, err := c.admin().Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].State != "online" || agents[0].Session != e.Session || agents[0].Capabilities.Datasets[0].Examples != 600 {
		t.Fatalf("agents = %+v", agents)
	}
	ra.cancel()
	if err := <-ra.done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	ra.done <- nil // for Cleanup
	waitFor(t, func() bool { return c.srv.Online() == 0 }, "the coordinator to see the agent leave")
	rec, _, err := c.srv.Store().Agent("site-a")
	if err != nil || rec.LastSeen.IsZero() || rec.Capabilities.Backend != "cpu" {
		t.Fatalf("record %+v %v", rec, err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	waitForWithin(t, 15*time.Second, cond, what)
}

func waitForWithin(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestReconnectAfterCoordinatorRestart(t *testing.T) {
	c := newCluster(t)
	ra := startAgent(t, c.enroll("site-b"), nil)
	first := ra.wait(t, agent.Connected, 10*time.Second)
	c.stop()
	ra.wait(t, agent.Disconnected, 10*time.Second)
	c.start() // same directory, same address
	second := ra.wait(t, agent.Connected, 20*time.Second)
	if second.Session == first.Session {
		t.Fatal("reconnected with the old session ID")
	}
	waitFor(t, func() bool { return c.srv.Online() == 1 }, "the agent to be back online")
}

func TestEnrollmentRefusals(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()

	used := c.token("reuse", time.Hour)
	if _, err := agent.Enroll(ctx, t.TempDir(), used, agent.EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	expired := c.token("late", time.Minute)
	pinned, _ := protocol.ParseJoinToken(c.token("pin", time.Hour))
	pinned.CAHash[0] ^= 0xff
	wrongPin, _ := pinned.Encode()
	forged, _ := protocol.ParseJoinToken(c.token("forged", time.Hour))
	forged.Secret[0] ^= 1
	forgedTok, _ := forged.Encode()

	cases := []struct {
		name, token string
		shift       time.Duration
		want        string
		code        protocol.ErrorCode
	}{
		{"token reuse", used, 0, "already used", protocol.CodeTokenUsed},
		{"expired token", expired, 2 * time.Minute, "expired", protocol.CodeTokenExpired},
		{"wrong CA pin", wrongPin, 0, "pinned hash", 0},
		{"forged secret", forgedTok, 0, "does not match", protocol.CodeTokenInvalid},
		{"garbage token", "fedq1.AAAA", 0, "damaged", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.shift.Store(int64(tc.shift))
			defer c.shift.Store(0)
			_, err := agent.Enroll(ctx, t.TempDir(), tc.token, agent.EnrollOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Enroll = %v, want error containing %q", err, tc.want)
			}
			if tc.code != 0 && protocol.CodeOf(err) != tc.code {
				t.Fatalf("code %v, want %v", protocol.CodeOf(err), tc.code)
			}
		})
	}
}

func TestRevokedAgentIsDisconnectedAndRefused(t *testing.T) {
	c := newCluster(t)
	id := c.enroll("site-r")
	ra := startAgent(t, id, nil)
	ra.wait(t, agent.Connected, 10*time.Second)
	if _, err := c.admin().Revoke(context.Background(), "site-r"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ra.done:
		if protocol.CodeOf(err) != protocol.CodeRevoked || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("Run = %v, want a revoked error", err)
		}
		ra.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("the revoked agent's daemon did not stop")
	}
	// A new attempt is refused at Hello.
	ra2 := startAgent(t, id, nil)
	select {
	case err := <-ra2.done:
		if protocol.CodeOf(err) != protocol.CodeRevoked {
			t.Fatalf("reconnect = %v, want revoked", err)
		}
		ra2.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("the revoked agent was not refused")
	}
	if _, err := c.admin().Revoke(context.Background(), "nobody"); protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Fatalf("revoke unknown = %v", err)
	}
}

func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	c := newCluster(t)
	other := t.TempDir()
	otherCA, err := ca.Init(other, ca.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An identity signed by the other CA, but trusting this coordinator's CA.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	cert, err := otherCA.SignCSR(csr, "intruder", transport.RoleAgent, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := ca.Load(c.dir)
	id := &agent.Identity{State: agent.State{Addr: c.addr, ID: "intruder"}, CA: mine.CACert,
		Cert: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
	ra := startAgent(t, id, nil)
	select {
	case err := <-ra.done:
		if err == nil || !strings.Contains(err.Error(), "another coordinator") {
			t.Fatalf("Run = %v, want a clear rejection", err)
		}
		ra.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("a certificate from another CA was not refused")
	}
}

func TestWrongALPNIsRefused(t *testing.T) {
	c := newCluster(t)
	mine, _ := ca.Load(c.dir)
	tc := transport.ClientTLS(mine.CACert, tls.Certificate{})
	tc.NextProtos = []string{"h3"}
	tr, err := transport.NewClientTransport()
	if err != nil {
		t.Fatal(err)
	}
	defer transport.CloseTransport(tr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = transport.Dial(ctx, tr, c.addr, tc)
	if err == nil || !strings.Contains(err.Error(), "does not speak fedq/1") {
		t.Fatalf("dial with ALPN h3 = %v, want a clear refusal", err)
	}
}

func TestGarbageDoesNotDisturbAgents(t *testing.T) {
	c := newCluster(t)
	ra := startAgent(t, c.enroll("steady"), nil)
	ra.wait(t, agent.Connected, 10*time.Second)

	// Garbage datagrams of every size at the coordinator's port.
	uc, err := net.Dial("udp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 1500)
	for i := range 2000 {
		n := 1 + i%len(buf)
		_, _ = rand.Read(buf[:n])
		if i%3 == 0 {
			buf[0] |= 0xc0 // looks like a QUIC long header
		}
		_, _ = uc.Write(buf[:n])
	}
	// Malformed frames on admin streams.
	cl := c.admin()
	for _, junk := range [][]byte{{0x40, 0, 0, 0, 3, 0xff, 0xff, 0xff}, {0x99, 0, 0, 0, 0}, {0x40, 0x7f, 0xff, 0xff, 0xff}} {
		if err := rawStream(cl, junk); err == nil {
			t.Errorf("malformed frame % x accepted", junk)
		}
	}
	if _, err := cl.Agents(context.Background()); err != nil {
		t.Fatalf("admin after garbage: %v", err)
	}
	// The agent never noticed.
	select {
	case e := <-ra.events:
		t.Fatalf("agent event during garbage: %+v", e)
	case <-time.After(3 * c.heartbeat): // three heartbeat intervals
	}
	if c.srv.Online() != 1 {
		t.Fatal("the agent's session did not survive")
	}
	// And a new agent still connects.
	startAgent(t, c.enroll("newcomer"), nil).wait(t, agent.Connected, 10*time.Second)
}

// rawStream sends raw bytes as an admin stream and returns the coordinator's error reply.
func rawStream(cl *coordinator.AdminClient, data []byte) error {
	return cl.Raw(context.Background(), data)
}

func TestThousandAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	c := newClusterHB(t, 10*time.Second)
	const n = 1000
	auth := c.srv.Authority()
	tr, err := transport.NewClientTransport()
	if err != nil {
		t.Fatal(err)
	}
	defer transport.CloseTransport(tr)
	var connected atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		name := "bulk-" + strconv.Itoa(i)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		cert, err := auth.SignCSR(csr, name, transport.RoleAgent, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.srv.Store().Enroll("bulk-token-"+strconv.Itoa(i), store.Agent{ID: name, Serial: cert.SerialNumber.Text(16), EnrolledAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		id := &agent.Identity{State: agent.State{Addr: c.addr, ID: name}, CA: auth.CACert,
			Cert: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
		d, err := agent.New(agent.Config{Identity: id, Logger: quietLogger(), Transport: tr,
			Backoff: agent.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5},
			OnEvent: func(e agent.Event) {
				if e.Kind == agent.Connected {
					connected.Add(1)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = d.Run(ctx) })
	}
	waitForWithin(t, 3*time.Minute, func() bool { return c.srv.Online() == n }, "1,000 agents online")
	agents, err := c.admin().Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	online := 0
	for _, a := range agents {
		if a.State == "online" {
			online++
		}
	}
	if online != n {
		t.Fatalf("admin sees %d online, want %d", online, n)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("cancelled early")
	}
}

// startAgentB enrolls and connects an agent for a benchmark and returns its daemon.
func startAgentB(b *testing.B, c *cluster) *agent.Daemon {
	b.Helper()
	ra := startAgent(b, c.enroll("bench-"+strconv.Itoa(c.srv.Online())), nil)
	ra.wait(b, agent.Connected, 10*time.Second)
	return ra.d
}
