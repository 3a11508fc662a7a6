package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/protocol/transport"
)

func benchAgentsCommand() *cli.Command {
	return &cli.Command{
		Name:  "agents",
		Usage: "measure a coordinator's memory per idle connected agent (Linux)",
		Description: `Provisions N agent identities in a fresh coordinator directory, starts this binary's
coordinator in a child process, connects N agent sessions to it over loopback from this
process, and reports the child's resident memory before and after.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 1000, Usage: "idle agents to connect"},
			&cli.IntFlag{Name: "per-socket", Value: 500, Usage: "agent connections per client UDP socket"},
			&cli.DurationFlag{Name: "heartbeat", Value: coordinator.DefaultHeartbeat, Usage: "heartbeat interval"},
			&cli.DurationFlag{Name: "settle", Value: 5 * time.Second, Usage: "wait after the last agent connected before measuring"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: runBenchAgents,
	}
}

// rssKB reads a process's resident set size (and its peak) from /proc.
func rssKB(pid int) (rss, peak int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of process %d: %w (Linux only)", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.Atoi(fields[0])
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak, sc.Err()
}

// userHZ is the unit of the CPU times in /proc/PID/stat: Linux fixes it at 100 for
// user space, whatever the kernel's tick rate.
const userHZ = 100

// cpuSeconds returns the CPU time (user + system, all threads) process pid has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w (Linux only)", pid, err)
	}
	ticks, err := statCPUTicks(string(b))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	return float64(ticks) / userHZ, nil
}

// statCPUTicks returns utime + stime from a /proc/PID/stat line. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself, so fields
// are counted from the last ')'.
func statCPUTicks(line string) (int64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line %q", line)
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the command, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed utime %q or stime %q", f[11], f[12])
	}
	return utime + stime, nil
}

func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func runBenchAgents(c *cli.Context) error {
	n, perSocket := c.Int("agents"), c.Int("per-socket")
	if n < 1 || perSocket < 1 {
		return usageError("--agents and --per-socket must be at least 1")
	}
	ctx := c.Context
	dir, err := os.MkdirTemp("", "fedq-bench-agents-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freeUDPPort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	auth, err := ca.Init(dir, ca.InitOptions{Addr: addr})
	if err != nil {
		return err
	}
	// Identities, registered directly in the state file (the coordinator is not running).
	fmt.Fprintf(c.App.ErrWriter, "provisioning %d agents...\n", n)
	ids := make([]*agent.Identity, n)
	recs := make([]store.Agent, n)
	toks := make([]string, n)
	now := time.Now()
	for i := range n {
		name := fmt.Sprintf("idle-%05d", i)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return err
		}
		cert, err := auth.SignCSR(csr, name, transport.RoleAgent, now)
		if err != nil {
			return err
		}
		ids[i] = &agent.Identity{State: agent.State{Addr: addr, ID: name}, CA: auth.CACert,
			Cert: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
		recs[i] = store.Agent{ID: name, Serial: cert.SerialNumber.Text(16), EnrolledAt: now}
		toks[i] = fmt.Sprintf("bench-%d", i)
	}
	st, err := store.Open(filepath.Join(dir, coordinator.StateFile))
	if err != nil {
		return err
	}
	if err := st.Import(toks, recs); err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cctx, stopCoord := context.WithCancel(ctx)
	defer stopCoord()
	cmd := exec.CommandContext(cctx, exe, "--log-level", "warn", "coordinator", "run", "--dir", dir, "--listen", addr,
		"--heartbeat", c.Duration("heartbeat").String())
	cmd.Stdout, cmd.Stderr = io.Discard, c.App.ErrWriter
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	admin, err := dialWhenUp(ctx, dir, addr)
	if err != nil {
		return err
	}
	defer admin.Close()
	time.Sleep(time.Second)
	baseRSS, _, err := rssKB(cmd.Process.Pid)
	if err != nil {
		return err
	}

	fmt.Fprintf(c.App.ErrWriter, "connecting %d agents...\n", n)
	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	var connected atomic.Int64
	var transports []*quic.Transport
	defer func() {
		for _, tr := range transports {
			_ = transport.CloseTransport(tr)
		}
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sem := make(chan struct{}, 64) // handshakes in flight
	start := time.Now()
	for i, id := range ids {
		if i%perSocket == 0 {
			tr, err := transport.NewClientTransport()
			if err != nil {
				return err
			}
			transports = append(transports, tr)
		}
		ready := make(chan struct{})
		var once sync.Once
		d, err := agent.New(agent.Config{Identity: id, Logger: quiet, Transport: transports[len(transports)-1],
			OnEvent: func(e agent.Event) {
				if e.Kind == agent.Connected {
					connected.Add(1)
					once.Do(func() { close(ready) })
				}
			}})
		if err != nil {
			return err
		}
		sem <- struct{}{}
		wg.Go(func() { _ = d.Run(actx) })
		go func() {
			select {
			case <-ready:
			case <-time.After(30 * time.Second):
			case <-actx.Done():
			}
			<-sem
		}()
	}
	var status coordinator.Status
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if status, err = admin.Status(ctx); err != nil {
			return err
		}
		if status.Online >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d agents online after 5 minutes", status.Online, n)
		}
	}
	rampUp := time.Since(start)
	time.Sleep(c.Duration("settle"))
	rss, peak, err := rssKB(cmd.Process.Pid)
	if err != nil {
		return err
	}
	if status, err = admin.Status(ctx); err != nil {
		return err
	}
	rep := map[string]any{"agents": n, "online": status.Online, "ramp_up_seconds": rampUp.Seconds(),
		"coordinator_rss_idle_mb": float64(baseRSS) / 1024, "coordinator_rss_mb": float64(rss) / 1024,
		"coordinator_rss_peak_mb": float64(peak) / 1024, "kb_per_agent": float64(rss-baseRSS) / float64(n)}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(rep)
	}
	fmt.Fprintf(c.App.Writer, "%d agents online (connected in %.1fs): coordinator RSS %.0f MB (idle %.0f MB, peak %.0f MB), %.1f KB per agent\n",
		status.Online, rampUp.Seconds(), float64(rss)/1024, float64(baseRSS)/1024, float64(peak)/1024, float64(rss-baseRSS)/float64(n))
	return nil
}
