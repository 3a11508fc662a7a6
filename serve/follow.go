package serve

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/coordinator"
	"github.com/fedq/fedq/coordinator/store"
	"github.com/fedq/fedq/coordinator/task"
	"github.com/fedq/fedq/protocol"
)

// Puller fetches verified versions of one task from a coordinator with admin credentials.
// It dials on first use and again after a failed call, so a coordinator restart costs
// one failed poll. A Puller is not safe for concurrent use.
type Puller struct {
	// Dir holds the admin credentials (the coordinator's --dir, or one made by `fedq admin
	// cert`), with the coordinator's signing.pub.
	Dir string
	// Addr overrides the coordinator address in Dir when not empty.
	Addr string
	// Task is the task whose versions are pulled.
	Task string
	// Compute configures the networks built (Inference is always set).
	Compute compute.Options

	cl   *coordinator.AdminClient
	spec *compute.Spec
}

func (p *Puller) client(ctx context.Context) (*coordinator.AdminClient, error) {
	if p.cl != nil {
		return p.cl, nil
	}
	cl, err := coordinator.DialAdmin(ctx, p.Dir, p.Addr)
	if err != nil {
		return nil, err
	}
	if cl.SigningKey == nil {
		_ = cl.Close()
		return nil, fmt.Errorf("%s has no signing.pub: cannot verify models (make admin credentials with `fedq admin cert`)", p.Dir)
	}
	p.cl = cl
	return cl, nil
}

// drop closes the connection after a failure, so the next call dials again.
func (p *Puller) drop() {
	if p.cl != nil {
		_ = p.cl.Close()
		p.cl = nil
	}
}

// Close closes the connection to the coordinator.
func (p *Puller) Close() error {
	if p.cl == nil {
		return nil
	}
	err := p.cl.Close()
	p.cl = nil
	return err
}

// Latest returns the metadata of the task's newest version.
func (p *Puller) Latest(ctx context.Context) (store.Version, error) {
	cl, err := p.client(ctx)
	if err != nil {
		return store.Version{}, err
	}
	v, err := cl.Version(ctx, coordinator.VersionRequest{Task: p.Task, Latest: true})
	if err != nil {
		p.drop()
		return store.Version{}, fmt.Errorf("latest version of task %q: %w", p.Task, err)
	}
	return v, nil
}

// Pull downloads version v, checks the coordinator's signature of it and that the
// weights hash as signed, and builds the network. A version that fails a check is
// refused with an error that says which.
func (p *Puller) Pull(ctx context.Context, v store.Version) (*Model, error) {
	cl, err := p.client(ctx)
	if err != nil {
		return nil, err
	}
	m, err := p.pull(ctx, cl, v)
	if err != nil {
		if protocol.CodeOf(err) != protocol.CodeHashMismatch {
			p.drop()
		}
		return nil, fmt.Errorf("pull version %d of task %q: %w", v.Number, p.Task, err)
	}
	return m, nil
}

func (p *Puller) pull(ctx context.Context, cl *coordinator.AdminClient, v store.Version) (*Model, error) {
	if v.Task != p.Task {
		return nil, fmt.Errorf("version %d belongs to task %q", v.Number, v.Task)
	}
	if p.spec == nil {
		spec, err := taskModelSpec(ctx, cl, p.Task)
		if err != nil {
			return nil, err
		}
		p.spec = &spec
	}
	opt := p.Compute
	opt.Inference = true
	net, err := compute.New[float32](*p.spec, opt)
	if err != nil {
		return nil, fmt.Errorf("build model of task %q: %w", p.Task, err)
	}
	h, err := fetchVerified(ctx, cl, cl.SigningKey, v, net)
	if err != nil {
		return nil, err
	}
	return &Model{Net: net, Version: h.Number, Header: &h, Task: h.Task}, nil
}

// taskModelSpec returns the model spec of a task as the coordinator lists it.
func taskModelSpec(ctx context.Context, cl *coordinator.AdminClient, name string) (compute.Spec, error) {
	tasks, err := cl.Tasks(ctx)
	if err != nil {
		return compute.Spec{}, fmt.Errorf("list tasks: %w", err)
	}
	for _, t := range tasks {
		if t.Name != name {
			continue
		}
		spec, err := task.Parse(t.Spec)
		if err != nil {
			return compute.Spec{}, fmt.Errorf("task %q: %w", name, err)
		}
		ms, err := spec.ModelSpec()
		if err != nil {
			return compute.Spec{}, fmt.Errorf("task %q: %w", name, err)
		}
		return ms, nil
	}
	return compute.Spec{}, fmt.Errorf("the coordinator has no task %q", name)
}

// fetchVerified downloads version v into net's parameters, checking the signature of the
// stream's header against pub, that it names v, and that the weights hash as signed.
func fetchVerified(ctx context.Context, cl *coordinator.AdminClient, pub ed25519.PublicKey, v store.Version, net *compute.Model[float32]) (protocol.VersionHeader, error) {
	layout := make([]protocol.TensorInfo, 0, len(net.Params()))
	for _, p := range net.Params() {
		layout = append(layout, protocol.TensorInfo{Name: p.Name, DType: protocol.DTypeF32, Shape: p.Shape})
	}
	var meta map[string]string
	err := cl.FetchModel(ctx, v.Number, v.Hash, func(tr *protocol.TensorReader) error {
		meta = tr.Header().Meta
		return protocol.ReadParams(tr, layout, net.Values())
	})
	if err != nil {
		return protocol.VersionHeader{}, fmt.Errorf("download: %w", err)
	}
	h, err := Verify(pub, meta, net.Values())
	if err != nil {
		return h, err
	}
	if h.Number != v.Number || h.Hash != v.Hash || h.Task != v.Task {
		return h, verifyError("the signed model is version %d of %q (%s), asked for %d of %q (%s)", h.Number, h.Task, h.Hash, v.Number, v.Task, v.Hash)
	}
	return h, nil
}

// Follow serves the task's newest version under name and keeps following it: every
// interval it asks the coordinator for the latest version and, when it is newer than the
// one served, pulls it, verifies it and swaps it in. A version that fails verification is
// refused (logged once) and the one being served stays. Follow returns when ctx ends.
func Follow(ctx context.Context, s *Server, name string, p *Puller, interval time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if interval <= 0 {
		return fmt.Errorf("follow task %q: interval must be positive, got %v", p.Task, interval)
	}
	s.Register(name)
	defer p.Close()
	var refused uint64 // a version that failed verification: not tried again
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		v, err := p.Latest(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("cannot reach the coordinator; serving what is loaded", "task", p.Task, "err", err)
			}
		case v.Number == refused:
		default:
			cur, loaded := s.Current(name)
			if loaded && v.Number <= cur {
				break
			}
			m, err := p.Pull(ctx, v)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				if protocol.CodeOf(err) == protocol.CodeHashMismatch || isVerifyError(err) {
					refused = v.Number
					log.Error("refusing a version that does not verify; keeping the one served", "task", p.Task, "version", v.Number, "serving", cur, "err", err)
				} else {
					log.Warn("pull failed; will retry", "task", p.Task, "version", v.Number, "err", err)
				}
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if err := s.Swap(name, m); err != nil {
				return fmt.Errorf("follow task %q: %w", p.Task, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
