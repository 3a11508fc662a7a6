package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/fedq/fedq/privacy/dp"
	"github.com/fedq/fedq/privacy/secagg"
	"github.com/fedq/fedq/protocol"
	"github.com/fedq/fedq/protocol/transport"
)

// secureTask is an accepted task's secure aggregation: the protocol's client, driven by
// the control stream (roster, shares, unmask request) and by the task (masked input).
type secureTask struct {
	mu    sync.Mutex
	c     *secagg.Client
	round uint64
	ddp   *dp.Distributed // the offer's distributed-DP encoding, or nil
	ready chan struct{}   // closed once the neighbours' shares are in
	err   error           // why the protocol stopped, if it did
	// expires is when the state is dropped even if no unmask request came (the round
	// failed after this agent's upload).
	expires time.Time
}

// secureGrace is how long after its deadline a secure task's state is kept.
const secureGrace = 10 * time.Minute

// secureTasks are the running secure tasks, by task ID.
type secureTasks struct {
	mu sync.Mutex
	m  map[string]*secureTask
}

func (s *secureTasks) get(id string) *secureTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

func (s *secureTasks) put(id string, t *secureTask) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*secureTask{}
	}
	now := time.Now()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = t
}

func (s *secureTasks) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// secureConfig turns an offer's parameters into the round's configuration, and its
// distributed-DP encoding if it has one; dim is the model's parameter count.
func secureConfig(o *protocol.TaskOffer, dim int) (secagg.Config, *dp.Distributed, error) {
	p := o.SecAgg
	if p.ModulusBits != 32 {
		return secagg.Config{}, nil, fmt.Errorf("secure aggregation modulo 2^%d: this agent masks in Z_2^32", p.ModulusBits)
	}
	cfg := secagg.Config{Round: o.TaskID, Members: p.Members, Neighbours: int(p.Neighbours), Threshold: int(p.Threshold),
		Dim: protocol.MaskedLen(dim), Clip: p.ClipRange, Levels: p.Levels, MaxWeight: p.MaxWeight}
	var ddp *dp.Distributed
	if d := o.DP; d != nil && d.Mechanism == protocol.MechanismDiscreteGaussian {
		var err error
		if ddp, err = distributed(o, dim); err != nil {
			return secagg.Config{}, nil, err
		}
		cfg.Dim = ddp.Padded
	}
	if len(p.GraphSeed) != len(cfg.GraphSeed) {
		return secagg.Config{}, nil, errors.New("secure aggregation: the offer has no graph seed")
	}
	copy(cfg.GraphSeed[:], p.GraphSeed)
	return cfg, ddp, cfg.Validate()
}

// peerCerts returns the verifier of other agents' certificates, made once.
func (d *Daemon) peerCerts() transport.CertVerifier {
	d.verifyOnce.Do(func() {
		pool := x509.NewCertPool()
		pool.AddCert(d.cfg.Identity.CA)
		d.verify = transport.NewCertVerifier(pool, nil)
	})
	return d.verify
}

// startSecure makes the task's protocol client and returns its advertisement.
func (d *Daemon) startSecure(o *protocol.TaskOffer, dim int) (*protocol.SecAggAdvertise, error) {
	cfg, ddp, err := secureConfig(o, dim)
	if err != nil {
		return nil, err
	}
	key, ok := d.cfg.Identity.Cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("secure aggregation: the agent's key cannot sign")
	}
	c, err := secagg.NewClient(cfg, d.cfg.Identity.State.ID, transport.KeySigner{Key: key}, d.peerCerts(), rand.Reader)
	if err != nil {
		return nil, err
	}
	k, err := c.Advertise(nil)
	if err != nil {
		return nil, err
	}
	d.secure.put(o.TaskID, &secureTask{c: c, round: o.Round, ddp: ddp, ready: make(chan struct{}),
		expires: time.UnixMilli(o.DeadlineMs).Add(secureGrace)})
	return &protocol.SecAggAdvertise{Round: o.Round, TaskID: o.TaskID, EncPub: k.EncPub, MaskPub: k.MaskPub,
		SelfCommit: k.SelfCommit, Signature: k.Signature}, nil
}

// secureMessage handles a secure-aggregation message on the control stream. A message
// the protocol refuses ends the agent's part in the round (it stops answering, and the
// coordinator counts it as dropped); it does not end the session.
func (d *Daemon) secureMessage(m protocol.Message, send func(protocol.Message) error) error {
	var id string
	switch m := m.(type) {
	case *protocol.SecAggRoster:
		id = m.TaskID
	case *protocol.SecAggShares:
		id = m.TaskID
	case *protocol.SecAggUnmaskRequest:
		id = m.TaskID
	}
	st := d.secure.get(id)
	if st == nil {
		d.log.Debug("secure-aggregation message for no running task", "task", id, "type", m.Type())
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return nil
	}
	var reply protocol.Message
	var err error
	switch m.(type) {
	case *protocol.SecAggRoster:
		if d.dropsOut(id, DropShare) {
			err = errDroppedOut
		}
	case *protocol.SecAggUnmaskRequest:
		if d.dropsOut(id, DropUnmask) {
			err = errDroppedOut
		}
	}
	switch m := m.(type) {
	case *protocol.SecAggRoster:
		if err != nil {
			break
		}
		roster := make([]secagg.Keys, len(m.Peers))
		for i, p := range m.Peers {
			roster[i] = secagg.Keys{Member: p.AgentID, EncPub: p.EncPub, MaskPub: p.MaskPub, SelfCommit: p.SelfCommit,
				Signature: p.Signature, Credential: p.Certificate}
		}
		var cts map[string][]byte
		if cts, err = st.c.ShareKeys(roster); err == nil {
			reply = &protocol.SecAggShares{Round: st.round, TaskID: id, Encrypted: cts}
		}
	case *protocol.SecAggShares:
		if err = st.c.ReceiveShares(m.Encrypted); err == nil {
			close(st.ready)
			// Expand the masks while the task trains: off the control stream, and off
			// the round's critical path.
			go func() {
				st.mu.Lock()
				defer st.mu.Unlock()
				if st.err == nil {
					if err := st.c.PrepareMasks(); err != nil {
						d.log.Debug("prepare masks", "task", id, "err", err)
					}
				}
			}()
		}
	case *protocol.SecAggUnmaskRequest:
		if err != nil {
			break
		}
		var shares map[string][]byte
		if shares, err = st.c.Unmask(m.Survivors); err == nil {
			reply = &protocol.SecAggUnmaskResponse{Round: st.round, TaskID: id, Shares: shares}
			d.secure.remove(id) // the round is over for this agent
		}
	}
	if err != nil {
		st.err = err
		d.log.Warn("secure aggregation stopped", "task", id, "err", err)
		d.tasks.cancel(id)
		d.secure.remove(id)
		return send(&protocol.TaskDecline{TaskID: id, Round: st.round, Code: protocol.CodeCancelled, Reason: "secure aggregation: " + err.Error()})
	}
	if reply != nil {
		return send(reply)
	}
	return nil
}

// distributed is the offer's distributed-DP encoding for a model of dim parameters.
func distributed(o *protocol.TaskOffer, dim int) (*dp.Distributed, error) {
	p := o.DP
	if len(p.RotationSeed) != 32 || p.Bits < 8 || p.Bits > 32 || !(p.Gamma > 0) || !(p.Sigma2 > 0) || !(p.ClipNorm > 0) {
		return nil, errors.New("distributed DP: the offer's encoding parameters are incomplete")
	}
	ddp := &dp.Distributed{Dim: dim, Padded: 1 << bits.Len(uint(dim-1)), Clip: p.ClipNorm, Gamma: p.Gamma, Beta: dp.DefaultBeta,
		Bits: int(p.Bits), Sigma2: p.Sigma2}
	copy(ddp.Seed[:], p.RotationSeed)
	return ddp, nil
}

// maskUpdate waits until the task's shares are in, then masks the update and returns
// the masked vector: with the training loss appended, so that it is averaged without
// being revealed — or, under distributed DP, encoded and noised (dp.Distributed).
func (d *Daemon) maskUpdate(ctx context.Context, id string, delta []float32, loss float64, weight int) ([]uint32, error) {
	st := d.secure.get(id)
	if st == nil {
		return nil, errors.New("secure aggregation: no protocol state for the task")
	}
	select {
	case <-st.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	if ddp := st.ddp; ddp != nil {
		noise, err := dp.NewDiscreteGaussian(ddp.Sigma2, dp.SecureRand())
		if err != nil {
			return nil, err
		}
		enc := make([]uint32, ddp.Padded)
		if err := ddp.Encode(enc, delta, mrand.New(mrand.NewChaCha8(seed)), noise); err != nil {
			return nil, err
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.err != nil {
			return nil, st.err
		}
		y, err := st.c.MaskedVector(enc)
		if err != nil {
			st.err = err
		}
		return y, err
	}
	in := make([]float32, len(delta)+1)
	copy(in, delta)
	in[len(delta)] = float32(loss)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return nil, st.err
	}
	y, err := st.c.MaskedInput(in, float64(weight), mrand.New(mrand.NewChaCha8(seed)))
	if err != nil {
		st.err = err
	}
	return y, err
}
