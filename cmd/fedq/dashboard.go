package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/dashboard"
	"github.com/fedq/fedq/coordinator/sim"
	"github.com/fedq/fedq/coordinator/store"
)

// dashboardServer is a running dashboard.
type dashboardServer struct {
	addr string
	stop context.CancelFunc
	done chan error
}

// startDashboard serves srv's dashboard and metrics on addr (TCP) until stopped.
func startDashboard(ctx context.Context, addr string, srv *coordinator.Server, token string, publicMetrics bool, log *slog.Logger) (*dashboardServer, error) {
	h, err := dashboard.New(dashboard.Config{Source: srv.Dashboard(), Token: token, Metrics: srv.Metrics(), PublicMetrics: publicMetrics, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &dashboardServer{addr: ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { d.done <- dashboard.Serve(ctx, ln, h) }()
	return d, nil
}

// close stops the dashboard and waits for it.
func (d *dashboardServer) close() error {
	d.stop()
	return <-d.done
}

// dashboardURL is the address to open in a browser.
func dashboardURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr + "/"
}

// runCoordinatorDashboard serves srv until ctx is done, with the dashboard on addr when
// addr is not empty; the token is read from (or made in) tokenFile.
func runCoordinatorDashboard(c *cli.Context, srv *coordinator.Server, addr, tokenFile string) error {
	if addr == "" {
		return srv.Serve(c.Context)
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(c.String("dir"), dashboard.TokenFile)
	}
	token, err := dashboard.LoadOrCreateToken(tokenFile)
	if err != nil {
		return err
	}
	d, err := startDashboard(c.Context, addr, srv, token, c.Bool("metrics-public"), slog.Default())
	if err != nil {
		return err
	}
	slog.Info("dashboard listening", "url", dashboardURL(d.addr)+"?token=…", "token_file", tokenFile, "metrics", dashboardURL(d.addr)+"metrics")
	serveErr := srv.Serve(c.Context)
	return errors.Join(serveErr, d.close())
}

// simDashboard returns sim.Config.Serving for --dashboard ADDR: it serves the
// simulation's dashboard with a fresh token and prints its address to w.
func simDashboard(c *cli.Context, addr string) func(*coordinator.Server) func() {
	return func(srv *coordinator.Server) func() {
		token := dashboard.NewToken()
		d, err := startDashboard(c.Context, addr, srv, token, false, slog.Default())
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "fedq sim: no dashboard: %v\n", err)
			return nil
		}
		fmt.Fprintf(c.App.ErrWriter, "dashboard: %s?token=%s\n", dashboardURL(d.addr), token)
		return func() {
			if err := d.close(); err != nil {
				slog.Warn("dashboard", "err", err)
			}
		}
	}
}

func plotCommand() *cli.Command {
	return &cli.Command{
		Name:  "plot",
		Usage: "draw a task's accuracy and loss per round to a PNG file (admin)",
		Description: `Reads the task's versions from the running coordinator over the admin API (as
fedq versions does), or, with --offline, straight from the state file in --dir of a
coordinator that is stopped, and draws test accuracy (where the coordinator evaluates)
above the test and training losses.`,
		Flags: append(adminFlags(),
			&cli.StringFlag{Name: "task", Required: true, Usage: "the task"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "PNG file to write"},
			&cli.BoolFlag{Name: "offline", Usage: "read --dir's state file instead of asking the coordinator (it must be stopped)"},
			&cli.Float64Flag{Name: "target", Usage: "draw a dashed line at this accuracy"}),
		Action: func(c *cli.Context) error {
			name := c.String("task")
			var vs []store.Version
			if c.Bool("offline") {
				st, err := store.Open(filepath.Join(c.String("dir"), coordinator.StateFile))
				if err != nil {
					return err
				}
				defer st.Close()
				if vs, err = st.Versions(name); err != nil {
					return fmt.Errorf("versions of %s: %w", name, err)
				}
			} else {
				err := withAdmin(c, func(cl *coordinator.AdminClient) error {
					var err error
					vs, err = cl.Versions(c.Context, name)
					return err
				})
				if err != nil {
					return err
				}
			}
			if len(vs) == 0 {
				return cli.Exit(fmt.Sprintf("no task %q: no versions to plot (fedq versions lists them)", name), 1)
			}
			pts := make([]dashboard.VersionPoint, len(vs))
			for i, v := range vs {
				pts[i] = dashboard.VersionPoint{Number: v.Number, Round: v.Round, Created: v.Created, Metrics: v.Metrics}
			}
			title := fmt.Sprintf("fedq task %s: %d rounds, version %d", name, vs[len(vs)-1].Round, vs[len(vs)-1].Number)
			if err := dashboard.PlotFile(c.String("out"), pts, dashboard.PlotOptions{Title: title, Target: c.Float64("target")}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s: %d versions of %s\n", c.String("out"), len(vs), name)
			return nil
		},
	}
}

// plotSim draws a simulation's test accuracy and loss per round (fedq sim --plot).
func plotSim(path string, res *sim.Result, cfg sim.Config) error {
	pts := make([]dashboard.VersionPoint, len(res.Rounds))
	for i, r := range res.Rounds {
		pts[i] = dashboard.VersionPoint{Round: r.Round, Metrics: map[string]float64{"accuracy": r.Accuracy, "test_loss": r.Loss}}
	}
	title := fmt.Sprintf("fedq sim: %s, %d agents, %s, C=%g E=%d B=%d", cfg.Model, cfg.Agents, cfg.Partition, cfg.Fraction, cfg.Epochs, cfg.Batch)
	return dashboard.PlotFile(path, pts, dashboard.PlotOptions{Title: title, Target: cfg.Target})
}
