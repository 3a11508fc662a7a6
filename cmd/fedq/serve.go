package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve a global model over the Open Inference Protocol v2 (KServe/Triton REST), with dynamic batching and hot swap",
		Description: `Serve a saved model:

   fedq serve --model global.safetensors [--name mnist] [--verify-with coord] --listen 127.0.0.1:8000

or a task's latest version from a coordinator, following new versions as rounds commit them:

   fedq serve --dir ops --task mnist-2nn --follow --interval 5s --listen 127.0.0.1:8000

Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/ready],
POST /v2/models/NAME[/versions/V]/infer, GET /metrics (Prometheus). An infer request:

   {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [...]}]}

is answered with the outputs "logits" (FP32 [n, classes]) and "label" (INT64 [n]).
Versions pulled from a coordinator are always verified (signature and SHA-256 of the
weights); a version that fails is refused and the one being served stays.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "safetensors file to serve (from fedq train --out or fedq model pull)"},
			&cli.StringFlag{Name: "name", Usage: "model name in the URLs (default: the file's base name, or the task)"},
			&cli.StringFlag{Name: "verify-with", Usage: "with --model: a directory holding the coordinator's signing.pub (or the file): refuse a model that is not signed by it or whose weights were altered"},
			dirFlag("with --task: admin credentials (the coordinator's directory, or one from fedq admin cert)"),
			&cli.StringFlag{Name: "addr", Usage: "with --task: coordinator address, overriding the one in --dir"},
			&cli.StringFlag{Name: "task", Usage: "serve this task's latest version from the coordinator"},
			&cli.BoolFlag{Name: "follow", Usage: "with --task: keep polling the coordinator and swap in each newer version"},
			&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "with --follow: how often to ask for a newer version"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8000", Usage: "HTTP address to listen on"},
			&cli.IntFlag{Name: "max-batch", Value: serve.DefaultMaxBatch, Usage: "most samples per forward pass"},
			&cli.IntFlag{Name: "workers", Usage: "forward passes of the model that may run at once, each on a replica sharing its weights (default: one per core, GOMAXPROCS)"},
			&cli.DurationFlag{Name: "max-wait", Value: serve.DefaultMaxWait, Usage: "longest a batch waits for more requests"},
			&cli.IntFlag{Name: "max-queue", Value: serve.DefaultMaxQueue, Usage: "requests that may wait for the model; more are answered 503"},
			&cli.Int64Flag{Name: "max-body", Value: serve.DefaultMaxBody, Usage: "largest infer request body in bytes; larger is answered 413"},
			&cli.Float64Flag{Name: "rate", Usage: "infer requests a second per client IP (0: no limit); over it: 429"},
			&cli.IntFlag{Name: "burst", Usage: "with --rate: requests a client may burst (default: --rate rounded up)"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: serve.DefaultShutdownTimeout, Usage: "on SIGINT/SIGTERM, how long requests in flight may take to finish"},
			&cli.IntFlag{Name: "threads", Value: 1, Usage: "goroutines per matrix product of a forward pass", EnvVars: []string{"FEDQ_THREADS"}},
			&cli.StringFlag{Name: "kernel", Usage: "force a GEMM micro-kernel (see fedq info)", EnvVars: []string{"FEDQ_KERNEL"}},
		},
		Action: serveModel,
	}
}

func serveModel(c *cli.Context) error {
	file, taskName := c.String("model"), c.String("task")
	switch {
	case file == "" && taskName == "":
		return usageError("give --model FILE, or --task NAME (with --dir) to serve from a coordinator")
	case file != "" && taskName != "":
		return usageError("--model and --task exclude each other")
	case file != "" && c.Bool("follow"):
		return usageError("--follow needs --task (it follows a coordinator's versions), not --model")
	case taskName != "" && c.IsSet("verify-with"):
		return usageError("--verify-with is for --model: versions from a coordinator are always verified with --dir's signing.pub")
	case c.Int("threads") < 1:
		return usageError("--threads must be at least 1, got %d", c.Int("threads"))
	case c.Int("workers") < 0:
		return usageError("--workers must not be negative (0: one per core), got %d", c.Int("workers"))
	case c.Int("max-batch") < 1 || c.Int("max-queue") < 1 || c.Int64("max-body") < 1:
		return usageError("--max-batch, --max-queue and --max-body must be positive")
	case c.Duration("max-wait") <= 0 || c.Duration("interval") <= 0:
		return usageError("--max-wait and --interval must be positive")
	case c.Float64("rate") < 0:
		return usageError("--rate must not be negative")
	}
	co := compute.Options{Threads: c.Int("threads"), Kernel: c.String("kernel"), Inference: true}
	log := slog.Default()
	srv := serve.New(serve.Options{
		MaxBatch: c.Int("max-batch"), Workers: c.Int("workers"), MaxWait: c.Duration("max-wait"), MaxQueue: c.Int("max-queue"), MaxBody: c.Int64("max-body"),
		Rate: c.Float64("rate"), Burst: c.Int("burst"), ShutdownTimeout: c.Duration("shutdown-timeout"), Version: version, Logger: log,
	})
	name := c.String("name")
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	followed := make(chan error, 1)
	if file != "" {
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		}
		var pub ed25519.PublicKey
		if dir := c.String("verify-with"); dir != "" {
			var err error
			if pub, err = serve.LoadSigningKey(dir); err != nil {
				return fmt.Errorf("--verify-with: %w", err)
			}
		}
		m, err := serve.LoadFile(file, serve.LoadOptions{VerifyWith: pub, Compute: co})
		if err != nil {
			return err
		}
		if pub == nil && m.Version != 0 {
			log.Warn("serving a versioned model without checking its signature (give --verify-with)", "file", file, "version", m.Version)
		}
		if err := srv.Swap(name, m); err != nil {
			return err
		}
		followed <- nil
	} else {
		if name == "" {
			name = taskName
		}
		p := &serve.Puller{Dir: c.String("dir"), Addr: c.String("addr"), Task: taskName, Compute: co}
		if c.Bool("follow") {
			go func() { followed <- serve.Follow(ctx, srv, name, p, c.Duration("interval"), log) }()
		} else {
			v, err := p.Latest(ctx)
			if err != nil {
				return err
			}
			m, err := p.Pull(ctx, v)
			_ = p.Close()
			if err != nil {
				return err
			}
			if err := srv.Swap(name, m); err != nil {
				return err
			}
			followed <- nil
		}
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		cancel()
		<-followed
		srv.Close()
		return fmt.Errorf("--listen: %w", err)
	}
	log.Info("serving over the Open Inference Protocol v2", "url", "http://"+ln.Addr().String()+"/v2/models/"+name,
		"max_batch", c.Int("max-batch"), "max_wait", c.Duration("max-wait"), "rate", c.Float64("rate"))
	err = srv.Serve(ctx, ln)
	cancel()
	if ferr := <-followed; err == nil {
		err = ferr
	}
	return err
}
