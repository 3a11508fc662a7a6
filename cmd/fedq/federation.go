package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/ca"
	"github.com/fedq/fedq/protocol"
)

// dirFlag is the coordinator's directory, made by `fedq ca init`.
func dirFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Value: "./fedq-coordinator", EnvVars: []string{"FEDQ_DIR"}, Usage: usage}
}

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "the coordinator's certificate authority",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "create the coordinator's CA, server certificate, model-signing key and a local admin certificate",
			Flags: []cli.Flag{
				dirFlag("directory to create (kept private: it holds the CA key)"),
				&cli.StringFlag{Name: "addr", Value: "127.0.0.1:4433", Usage: "address agents will dial, host:port (goes into join tokens)"},
				&cli.StringSliceFlag{Name: "host", Usage: "extra DNS name or IP for the server certificate (repeatable)"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				a, err := ca.Init(c.String("dir"), ca.InitOptions{Addr: c.String("addr"), Hosts: c.StringSlice("host")})
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"dir": a.Dir, "addr": a.Config.Addr, "hosts": a.Config.Hosts, "ca_sha256": a.CAHash().String()})
				}
				fmt.Fprintf(c.App.Writer, "created coordinator CA in %s\nCA SHA-256 %s\nagents will dial %s; next: fedq token create --dir %s --name SITE\n",
					a.Dir, a.CAHash(), a.Config.Addr, a.Dir)
				return nil
			},
		}},
	}
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "join tokens for new agents",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "make a one-time join token for an agent (prints it once)",
			Flags: []cli.Flag{
				dirFlag("coordinator directory"),
				&cli.StringFlag{Name: "name", Required: true, Usage: "the agent's name (its identity once enrolled)"},
				&cli.DurationFlag{Name: "ttl", Value: 24 * time.Hour, Usage: "how long the token stays valid"},
				&cli.StringFlag{Name: "addr", Usage: "coordinator address to put in the token (default: the one in coordinator.json)"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			},
			Action: func(c *cli.Context) error {
				a, err := ca.Load(c.String("dir"))
				if err != nil {
					return err
				}
				tok, rec, err := a.CreateToken(c.String("name"), c.Duration("ttl"), c.String("addr"), time.Now())
				if err != nil {
					return usageError("%v", err)
				}
				if c.Bool("json") {
					return json.NewEncoder(c.App.Writer).Encode(map[string]any{"token": tok, "id": rec.ID, "name": rec.Name, "expires": rec.Expires})
				}
				fmt.Fprintln(c.App.Writer, tok)
				fmt.Fprintf(c.App.ErrWriter, "token for %q, valid until %s; on the agent: fedq agent enroll --token TOKEN --dir DIR\n", rec.Name, rec.Expires.Format(time.RFC3339))
				return nil
			},
		}},
	}
}

func coordinatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "coordinator",
		Usage: "run the coordinator",
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "accept agents and admin clients until interrupted",
			Flags: []cli.Flag{
				dirFlag("coordinator directory (from fedq ca init)"),
				&cli.StringFlag{Name: "listen", Usage: "UDP address to listen on (default: the port of the address in coordinator.json, all interfaces)"},
				&cli.DurationFlag{Name: "heartbeat", Value: coordinator.DefaultHeartbeat, Usage: "heartbeat interval asked of agents"},
				&cli.IntFlag{Name: "staging", Value: 1, Usage: "updates of a task received at once (each holds one model-sized buffer)"},
				&cli.Int64Flag{Name: "aggregation-memory", Value: 1024, Usage: "MiB of updates that strategies keeping every update " +
					"(median, trimmed mean, Krum) hold in memory; the rest spill to memory-mapped files in --dir"},
				&cli.StringFlag{Name: "cpuprofile", Usage: "write a pprof CPU profile to this file when the coordinator stops"},
				&cli.StringFlag{Name: "memprofile", Usage: "write a pprof heap profile to this file when the coordinator stops"},
				&cli.StringSliceFlag{Name: "data", Usage: "a labelled dataset the coordinator holds for semi-supervised tasks (labels at the coordinator), " +
					"NAME=SOURCE as for fedq agent run; it never leaves the coordinator; repeatable"},
				&cli.IntFlag{Name: "gc-percent", Value: 25, Usage: "how far (%) the heap may grow past live data before Go collects it; " +
					"the coordinator's live data is a few model-sized buffers without pointers, cheap to scan, so a low value bounds memory " +
					"near 3-4 models at little CPU cost (GOGC in the environment wins; -1 turns the collector off)"},
				&cli.StringFlag{Name: "http", Usage: "serve the dashboard and /metrics on this TCP address (e.g. 127.0.0.1:8080), behind the admin token"},
				&cli.StringFlag{Name: "http-token-file", Usage: "the dashboard's admin token, made on first use (default: dashboard.token in --dir)"},
				&cli.BoolFlag{Name: "metrics-public", Usage: "serve /metrics without the token (for a scraper on a trusted network)"},
			},
			Action: func(c *cli.Context) error {
				if os.Getenv("GOGC") == "" {
					debug.SetGCPercent(c.Int("gc-percent"))
				}
				labelled, err := coordinatorData(c.StringSlice("data"))
				if err != nil {
					return err
				}
				srv, err := coordinator.Listen(coordinator.Config{Dir: c.String("dir"), Listen: c.String("listen"), Heartbeat: c.Duration("heartbeat"),
					StagingBuffers: c.Int("staging"), AggregationMemory: aggregationMemory(c.Int64("aggregation-memory")), Labelled: labelled})
				if err != nil {
					return err
				}
				stop, err := profile(c.String("cpuprofile"), c.String("memprofile"))
				if err != nil {
					return err
				}
				defer stop()
				return runCoordinatorDashboard(c, srv, c.String("http"), c.String("http-token-file"))
			},
		}},
	}
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "the agent daemon of a data-holding site",
		Subcommands: []*cli.Command{{
			Name:  "enroll",
			Usage: "enroll with a join token: make a key, get a certificate, keep both in --dir",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "token", Required: true, EnvVars: []string{"FEDQ_TOKEN"}, Usage: "join token from fedq token create"},
				&cli.StringFlag{Name: "dir", Value: "./fedq-agent", EnvVars: []string{"FEDQ_AGENT_DIR"}, Usage: "the agent's directory"},
				&cli.StringFlag{Name: "name", Usage: "name to ask for (the token decides)"},
				&cli.StringFlag{Name: "addr", Usage: "coordinator address, overriding the token's"},
				&cli.BoolFlag{Name: "force", Usage: "replace an existing enrollment in --dir"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				id, err := agent.Enroll(c.Context, c.String("dir"), c.String("token"),
					agent.EnrollOptions{Name: c.String("name"), Addr: c.String("addr"), Force: c.Bool("force")})
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"id": id.State.ID, "addr": id.State.Addr, "dir": id.Dir, "enrolled_at": id.State.EnrolledAt})
				}
				fmt.Fprintf(c.App.Writer, "enrolled as %q with %s; next: fedq agent run --dir %s --data NAME=SOURCE\n", id.State.ID, id.State.Addr, id.Dir)
				return nil
			},
		}, {
			Name:  "run",
			Usage: "stay connected to the coordinator and serve its tasks until interrupted",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Value: "./fedq-agent", EnvVars: []string{"FEDQ_AGENT_DIR"}, Usage: "the agent's directory (from fedq agent enroll)"},
				&cli.StringSliceFlag{Name: "data", Usage: "a local dataset, NAME=SOURCE (mnist, mnist-test, a folder of IDX files, a .csv file); repeatable"},
				&cli.StringFlag{Name: "addr", Usage: "coordinator address, overriding the enrolled one"},
				&cli.IntFlag{Name: "threads", Value: 1, Usage: "compute threads"},
				deviceFlag(),
			},
			Action: runAgent,
		}, {
			Name:      "revoke",
			Usage:     "revoke an agent: its next connection fails and its session ends now (admin)",
			ArgsUsage: "ID",
			Flags:     append(adminFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageError("agent revoke takes one agent ID")
				}
				cl, err := coordinator.DialAdmin(c.Context, c.String("dir"), c.String("addr"))
				if err != nil {
					return err
				}
				defer cl.Close()
				st, err := cl.Revoke(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, st)
				}
				fmt.Fprintf(c.App.Writer, "revoked %s at %s\n", st.ID, st.RevokedAt.Format(time.RFC3339))
				return nil
			},
		}},
	}
}

func runAgent(c *cli.Context) error {
	id, err := agent.Load(c.String("dir"))
	if err != nil {
		return err
	}
	var data []*agent.LocalData
	byName := map[string]*dataset.Dataset{}
	for _, f := range c.StringSlice("data") {
		ld, err := agent.ParseDataFlag(f)
		if err != nil {
			return usageError("%v", err)
		}
		if byName[ld.Name] != nil {
			return usageError("--data %s: the name %q is given twice", f, ld.Name)
		}
		data = append(data, ld)
		byName[ld.Name] = ld.Data
	}
	gpus, err := selectDevice(c)
	if err != nil {
		return err
	}
	caps := protocol.Capabilities{Datasets: agent.Describe(data), Backend: "cpu", Device: runtime.GOARCH + " CPU",
		Threads: uint32(c.Int("threads")), Features: []string{agent.FeatureSemi}}
	for _, g := range gpus { // found, not used yet: reported so the coordinator knows
		caps.GPUs = append(caps.GPUs, protocol.GPUInfo{Name: g.Name, MemoryBytes: g.Memory})
	}
	d, err := agent.New(agent.Config{Identity: id, Addr: c.String("addr"), Capabilities: caps, SoftwareVersion: version,
		Data: byName, Threads: c.Int("threads")})
	if err != nil {
		return err
	}
	return d.Run(c.Context)
}

func adminFlags() []cli.Flag {
	return []cli.Flag{
		dirFlag("admin credentials: the coordinator's directory, or one from fedq admin cert"),
		&cli.StringFlag{Name: "addr", Usage: "coordinator address, overriding the one in --dir"},
	}
}

func agentsCommand() *cli.Command {
	return &cli.Command{
		Name:  "agents",
		Usage: "list enrolled agents with their state and capabilities (admin)",
		Flags: append(adminFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			cl, err := coordinator.DialAdmin(c.Context, c.String("dir"), c.String("addr"))
			if err != nil {
				return err
			}
			defer cl.Close()
			list, err := cl.Agents(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(list)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tLAST SEEN\tDATASETS\tBACKEND\tVERSION")
			for _, a := range list {
				var ds []string
				for _, d := range a.Capabilities.Datasets {
					if d.Unlabelled > 0 {
						ds = append(ds, fmt.Sprintf("%s(%d, %d unlabelled)", d.Name, d.Examples, d.Unlabelled))
						continue
					}
					ds = append(ds, fmt.Sprintf("%s(%d)", d.Name, d.Examples))
				}
				seen := "-"
				if !a.LastSeen.IsZero() {
					seen = a.LastSeen.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, seen, strings.Join(ds, ","), a.Capabilities.Backend, a.SoftwareVersion)
			}
			return tw.Flush()
		},
	}
}

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "admin credentials",
		Subcommands: []*cli.Command{{
			Name:  "cert",
			Usage: "issue an admin certificate for another machine, into --out",
			Flags: []cli.Flag{
				dirFlag("coordinator directory"),
				&cli.StringFlag{Name: "name", Required: true, Usage: "the admin's name"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "directory to write admin.crt, admin.key, ca.crt, signing.pub and coordinator.json to"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				a, err := ca.Load(c.String("dir"))
				if err != nil {
					return err
				}
				if err := ca.ValidName(c.String("name")); err != nil {
					return usageError("%v", err)
				}
				out := c.String("out")
				if _, err := os.Stat(out); err == nil {
					if entries, _ := os.ReadDir(out); len(entries) > 0 && !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == ca.AdminCertFile }) {
						return usageError("--out %s exists and is not an admin directory", out)
					}
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
				if err := a.WriteAdminCert(out, c.String("name"), time.Now()); err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"name": c.String("name"), "dir": out})
				}
				fmt.Fprintf(c.App.Writer, "admin credentials for %q in %s; use them with --dir %s\n", c.String("name"), out, out)
				return nil
			},
		}},
	}
}

// profile starts a CPU profile (when cpu is set) and returns a function that stops it
// and writes a heap profile (when mem is set).
func profile(cpu, mem string) (func(), error) {
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		cpuFile = f
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem != "" {
			if f, err := os.Create(mem); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}, nil
}

// aggregationMemory converts --aggregation-memory (MiB; 0 keeps nothing in memory) into
// coordinator.Config's bytes (where 0 means the default and < 0 nothing).
func aggregationMemory(mib int64) int64 {
	if mib <= 0 {
		return -1
	}
	return mib << 20
}
