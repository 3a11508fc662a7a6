// Command fedq is the one binary of fedq, a federated-learning system: the coordinator,
// the agent daemon, the admin commands, local training and benchmarks.
//
// Run `fedq help` for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the process exit code; tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintln(stderr, "fedq:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "fedq",
		Usage:     "federated learning over QUIC, with secure aggregation and differential privacy",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by run; cli must not exit the process itself.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"FEDQ_LOG_LEVEL"}},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return cli.Exit(fmt.Sprintf("--log-level: %v (want debug, info, warn or error)", err), 2)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
		Commands: []*cli.Command{
			trainCommand(),
			evalCommand(),
			benchCommand(),
			infoCommand(),
			caCommand(),
			tokenCommand(),
			coordinatorCommand(),
			agentCommand(),
			agentsCommand(),
			adminCommand(),
			taskCommand(),
			roundCommand(),
			statusCommand(),
			versionsCommand(),
			plotCommand(),
			modelCommand(),
			simCommand(),
			dpCommand(),
			secaggCommand(),
			serveCommand(),
		},
	}
}
