package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
)

// TestMain lets this test binary act as a coordinator process (for kill -9 tests):
// with FEDQ_TEST_COORDINATOR_DIR set it serves that directory until SIGINT, or until
// FEDQ_TEST_CRASH_ROUND's blob is written, where it dies as a crash would.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FEDQ_TEST_COORDINATOR_DIR"); dir != "" {
		os.Exit(serveForTest(dir, os.Getenv("FEDQ_TEST_COORDINATOR_ADDR")))
	}
	os.Exit(m.Run())
}

func serveForTest(dir, addr string) int {
	cfg := coordinator.Config{Dir: dir, Listen: addr, Heartbeat: 2 * time.Second, Logger: quietLogger()}
	if r, err := strconv.Atoi(os.Getenv("FEDQ_TEST_CRASH_ROUND")); err == nil {
		cfg.AfterBlobWrite = func(_ string, round uint64) {
			if round == uint64(r) {
				os.Exit(137) // the weights are on disk, the version is not committed
			}
		}
	}
	srv, err := coordinator.Listen(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// coordinatorProcess runs this test binary as a coordinator on dir and addr.
func coordinatorProcess(t *testing.T, dir, addr string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"FEDQ_TEST_COORDINATOR_DIR=" + dir, "FEDQ_TEST_COORDINATOR_ADDR=" + addr}, env...)...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A failing test must not leave a coordinator behind (it would hold go test's output
	// open forever).
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// waitExit waits for the coordinator process to exit. If it has not within limit, the
// test fails with what the coordinator reports of its tasks and rounds, and with the
// process's goroutines (SIGQUIT makes it print them on the shared stderr).
func waitExit(t *testing.T, proc *exec.Cmd, dir, addr string, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- proc.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cl, err := coordinator.DialAdmin(ctx, dir, addr); err != nil {
		t.Logf("admin: %v", err)
	} else {
		st, err := cl.Status(ctx)
		t.Logf("status: %+v (%v)", st, err)
		ts, err := cl.Tasks(ctx)
		t.Logf("tasks: %+v (%v)", ts, err)
		cl.Close()
	}
	_ = proc.Process.Signal(syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	t.Fatalf("the coordinator process did not exit within %v", limit)
	return nil
}

func freeAddr(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// TestKillCoordinatorMidRound kills a coordinator process with SIGKILL while rounds run
// (once at a random moment, once right after a version's weights are written but before
// its metadata is committed), restarts it on the same directory, and checks that the
// agents reconnect by themselves, training carries on to the end, and the versions are
// contiguous, each round committed once, every one's weights verified.
func TestKillCoordinatorMidRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts coordinator processes")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	if _, err := ca.Init(dir, ca.InitOptions{Addr: addr}); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, addr: addr}
	proc := coordinatorProcess(t, dir, addr, "FEDQ_TEST_CRASH_ROUND=4")
	waitAdmin := func() *coordinator.AdminClient {
		var cl *coordinator.AdminClient
		waitForWithin(t, 20*time.Second, func() bool {
			var err error
			cl, err = coordinator.DialAdmin(context.Background(), dir, addr)
			if err == nil {
				if _, err = cl.Status(context.Background()); err != nil {
					cl.Close()
				}
			}
			return err == nil
		}, "the coordinator to come up")
		return cl
	}
	adm := waitAdmin()
	for i := range 4 {
		trainingAgent(t, c, fmt.Sprintf("site-%d", i), blobs(300, uint64(i)))
	}
	ctx := context.Background()
	spec := `{"name": "blobs", "dataset": "blobs",
	  "model": {"input": [4], "classes": 2, "layers": [{"type": "dense", "out": 16}, {"type": "relu"}, {"type": "dense", "out": 2}]},
	  "train": {"epochs": 2, "batch": 4, "lr": 0.05}, "agents_per_round": 3, "quorum": 2,
	  "deadlines": {"configure": "5s", "train": "20s"}, "seed": 9}`
	if _, err := adm.SubmitTask(ctx, json.RawMessage(spec)); err != nil {
		t.Fatal(err)
	}
	const rounds = 12
	if _, err := adm.StartRounds(ctx, "blobs", rounds); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	// Crash 1: the process dies after round 4's weights are written.
	if err := waitExit(t, proc, dir, addr, 5*time.Minute); err == nil || proc.ProcessState.ExitCode() != 137 {
		t.Fatalf("the coordinator should have crashed at round 4: %v", err)
	}
	proc = coordinatorProcess(t, dir, addr)
	adm = waitAdmin()
	// Crash 2: SIGKILL at some moment of a later round.
	waitForWithin(t, 5*time.Minute, func() bool {
		vs, err := adm.Versions(ctx, "blobs")
		return err == nil && len(vs) >= 8
	}, "round 7")
	adm.Close()
	time.Sleep(30 * time.Millisecond)
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	proc = coordinatorProcess(t, dir, addr)
	adm = waitAdmin()
	waitForWithin(t, 5*time.Minute, func() bool {
		ts, err := adm.Tasks(ctx)
		return err == nil && len(ts) == 1 && ts[0].Status == "done"
	}, "all rounds after two crashes")
	adm.Close()
	if err := proc.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, proc, dir, addr, time.Minute); err != nil {
		t.Fatalf("coordinator exit: %v", err)
	}

	st, err := store.Open(filepath.Join(dir, coordinator.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vs, err := st.Versions("blobs")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != rounds+1 {
		t.Fatalf("%d versions, want %d", len(vs), rounds+1)
	}
	blobStore, err := store.OpenBlobs(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if i > 0 && (v.Number != vs[i-1].Number+1 || v.Parent != vs[i-1].Number || v.Round != uint64(i)) {
			t.Fatalf("version %d does not follow %d: %+v", v.Number, vs[i-1].Number, v)
		}
		if err := blobStore.Get(v.Hash, make([]float32, v.Params)); err != nil {
			t.Fatalf("version %d: %v", v.Number, err)
		}
	}
	recs, err := st.Rounds("blobs")
	if err != nil {
		t.Fatal(err)
	}
	committed := map[uint64]int{}
	for _, r := range recs {
		if r.Result == "committed" {
			committed[r.Round]++
		}
	}
	for r := uint64(1); r <= rounds; r++ {
		if committed[r] != 1 {
			t.Fatalf("round %d committed %d times (records %+v)", r, committed[r], recs)
		}
	}
	rep, err := st.Check(blobStore)
	if err != nil || rep.OrphansRemoved != 0 {
		t.Fatalf("check: %+v %v", rep, err)
	}
}
