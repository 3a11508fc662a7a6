package task

import (
	"fmt"
	"math"

	"github.com/fedq/fedq/privacy/dp"
)

// Privacy is a task's differential privacy, in one of two modes.
//
// Mode "central" is user-level DP-FedAvg (McMahan et al. 2018): each round samples every
// eligible agent independently with probability Fraction (Poisson sampling, no
// over-selection); the coordinator clips each update to L2 norm Clip, sums the clipped
// updates unweighted, adds Gaussian noise of standard deviation NoiseMultiplier·Clip from
// a cryptographically secure source, and divides by the expected number of participants.
// Each committed round is one step of the subsampled Gaussian mechanism. With Sampling
// "fixed" a round instead samples exactly m = round(Fraction·Population) agents, see
// Sampling.
//
// Mode "record" is record-level DP for cross-silo federations: every agent trains with
// DP-SGD (Abadi et al. 2016) — each record's gradient clipped to Clip, noise of
// NoiseMultiplier·Clip on each step's sum, Poisson samples of its records at rate
// batch / records. Train.LocalSteps fixes the steps per round, and agents with fewer
// than MinRecords labelled records decline, so every record of every agent is covered by
// the accountant's rate batch / MinRecords over LocalSteps steps per round (sampling of
// agents only helps, and is not counted).
//
// In both modes the RDP accountant composes the rounds; a round that would take the
// task past its budget (Epsilon, Delta) is refused, and the ε spent is stored with each
// version.
type Privacy struct {
	// Mode is "central" (user-level) or "record" (record-level).
	Mode string `json:"mode"`
	// Clip is the L2 bound of one agent's update (central) or of one record's gradient
	// (record).
	Clip float64 `json:"clip"`
	// PerLayer, for mode central, clips each parameter tensor of an update to
	// Clip/√(tensors) instead of the whole update to Clip: the update's norm stays within
	// Clip (so does the sensitivity), and a layer with large updates cannot crowd out the
	// others.
	PerLayer bool `json:"per_layer,omitempty"`
	// AdaptiveClip, for mode central, adapts Clip round by round (Andrew et al. 2021)
	// towards a quantile of the updates' norms; Clip is then its starting value.
	AdaptiveClip *AdaptiveClip `json:"adaptive_clip,omitempty"`
	// Sampling, for the user-level modes (central and distributed), is how a round picks
	// its agents: "poisson" (the default: each eligible agent independently with
	// probability fraction, accounted under add/remove-one adjacency) or "fixed": exactly
	// m = round(fraction × Population) agents, uniformly without replacement from all
	// eligible agents, from a secure source, and the round does not start while fewer
	// than Population agents are eligible. Fixed-size sampling is accounted under
	// replace-one adjacency (Wang, Balle and Kasiviswanathan 2019), where replacing one
	// agent's clipped update moves the sum by up to 2·Clip, at sampling fraction
	// γ = m/Population; a round that samples from more agents than Population samples a
	// smaller fraction, which only amplifies privacy more, so the accounting is
	// conservative. The noised sum is divided by m.
	Sampling string `json:"sampling,omitempty"`
	// Population, required with Sampling "fixed", is the fewest eligible agents a round
	// may sample from: the n of the accountant's γ = m/n.
	Population int `json:"population,omitempty"`
	// MinRecords is, for mode record, the fewest labelled records an agent must hold.
	MinRecords int `json:"min_records,omitempty"`
	// NoiseMultiplier is the noise's standard deviation over Clip. Zero, with Rounds
	// set, calibrates the smallest one that lets Rounds rounds fit the budget.
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	// Epsilon and Delta are the task's budget.
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	// MinAgents, for mode distributed, is the fewest agents whose noise a committed
	// round's sum carries. Each round plans its noise for the agents it sampled, less a
	// margin for dropouts, and never for fewer than MinAgents (PlannedAgents): the
	// planned agents' shares add up to the noise multiplier, so a round with fewer
	// survivors is abandoned (and the next attempt samples afresh). Required; pick it
	// well below the expected participants (fraction × agents).
	MinAgents int `json:"min_agents,omitempty"`
	// MaxAgents, for mode distributed, is the most agents the modular sum is sized for
	// (default 16 × MinAgents).
	MaxAgents int `json:"max_agents,omitempty"`
	// Bits, for mode distributed, is the width of the modular sum (8–32, default 32).
	Bits int `json:"bits,omitempty"`
	// ModClip, for mode distributed, bounds the probability that a coordinate of the
	// sum wraps around (default 1e-6).
	ModClip float64 `json:"mod_clip,omitempty"`

	maxRounds uint64    // the most rounds the budget allows
	rate      float64   // the accountant's sampling rate (γ = m/Population with fixed)
	fraction  float64   // the spec's fraction (user-level modes)
	size      int       // with fixed sampling: the agents a round samples, m
	perRound  int       // mechanism steps per round
	orders    []float64 // the accountant's orders
	step      []float64 // the RDP of one round at each order
}

// AdaptiveClip is adaptive clipping (Andrew et al. 2021, "Differentially private learning
// with adaptive clipping"): each round the coordinator counts the sampled updates whose
// norm is within the clip, adds Gaussian noise of standard deviation CountNoise to the
// count, and moves the clip geometrically towards the Quantile of the norms:
// C ← C·exp(−LR·(b̄ − Quantile)), b̄ the noised share. The count is a second Gaussian
// query on the same sample; the update's noise multiplier z_Δ is chosen so that the two
// compose to the task's noise multiplier z: z_Δ = (z⁻² − (2·CountNoise)⁻²)^(−1/2), and the
// accountant needs nothing more. Under fixed-size sampling (replace-one) a replaced
// agent moves both the sum and the centred count twice as far, so the composed noise
// multiplier is z/2, which is what the without-replacement accountant uses.
type AdaptiveClip struct {
	// Quantile is the share of updates the clip aims to leave unclipped (default 0.5).
	Quantile float64 `json:"quantile,omitempty"`
	// LR is the geometric step η of the clip (default 0.2).
	LR float64 `json:"lr,omitempty"`
	// CountNoise is the noise on the count (default: a twentieth of the expected
	// participants, as in the paper).
	CountNoise float64 `json:"count_noise,omitempty"`
}

// UpdateNoiseMultiplier is the noise multiplier of the update sum: NoiseMultiplier, or
// with adaptive clipping what is left of it after the count's share.
func (p *Privacy) UpdateNoiseMultiplier() float64 {
	if p.AdaptiveClip == nil {
		return p.NoiseMultiplier
	}
	z, b := p.NoiseMultiplier, 2*p.AdaptiveClip.CountNoise
	return 1 / math.Sqrt(1/(z*z)-1/(b*b))
}

// The privacy modes.
const (
	Central     = "central"
	Record      = "record"
	Distributed = "distributed"
)

// UserLevel reports whether the mode protects agents (central or distributed): agents
// are then sampled as Sampling says (Poisson with probability fraction, or a fixed
// number) and not over-selected.
func (p *Privacy) UserLevel() bool { return p.Mode == Central || p.Mode == Distributed }

// SampleRate is the sampling rate the accountant uses: agents' (central) or records'
// (record); with fixed-size sampling, γ = m/Population.
func (p *Privacy) SampleRate() float64 { return p.rate }

// FixedSize reports whether a user-level mode samples a fixed number of agents a round
// (Sampling "fixed").
func (p *Privacy) FixedSize() bool { return p.UserLevel() && p.Sampling == string(dp.Fixed) }

// SampleSize is m, the agents a round samples with fixed-size sampling (0 otherwise).
func (p *Privacy) SampleSize() int { return p.size }

// Denominator is what DP-FedAvg divides a round's noised sum by, for a round that
// sampled from eligible agents: the expected participants fraction × eligible (Poisson
// sampling) or the sample size m (fixed). Either way it does not depend on who took part.
func (p *Privacy) Denominator(eligible int) float64 {
	if p.FixedSize() {
		return float64(p.size)
	}
	return p.fraction * float64(eligible)
}

// accounting is the dp package's name of the sampling the accountant assumes.
func (p *Privacy) accounting() dp.Sampling {
	if p.FixedSize() {
		return dp.Fixed
	}
	return dp.Poisson
}

// normalize checks p against the spec and fills in the calibrated noise.
func (p *Privacy) normalize(s *Spec) error {
	switch p.Mode {
	case Central:
		if err := p.central(s); err != nil {
			return err
		}
	case Record:
		if err := p.record(s); err != nil {
			return err
		}
	case Distributed:
		if err := p.distributed(s); err != nil {
			return err
		}
	default:
		return bad("privacy.mode", "%q: want %q (user-level DP-FedAvg), %q (the same with the noise added by the agents under secure aggregation) or %q (record-level DP-SGD)",
			p.Mode, Central, Distributed, Record)
	}
	if !(p.Clip > 0) || math.IsInf(p.Clip, 0) {
		return bad("privacy.clip", "must be positive, got %v", p.Clip)
	}
	if !(p.Epsilon > 0) || math.IsInf(p.Epsilon, 0) {
		return bad("privacy.epsilon", "the budget must be positive, got %v", p.Epsilon)
	}
	if !(p.Delta > 0 && p.Delta < 1) {
		return bad("privacy.delta", "must be in (0, 1), got %v", p.Delta)
	}
	if p.NoiseMultiplier < 0 || math.IsNaN(p.NoiseMultiplier) || math.IsInf(p.NoiseMultiplier, 0) {
		return bad("privacy.noise_multiplier", "must be ≥ 0, got %v", p.NoiseMultiplier)
	}
	if p.NoiseMultiplier == 0 {
		if s.Rounds == 0 {
			return bad("privacy.noise_multiplier", "give it, or give rounds to calibrate it from the budget")
		}
		z, err := dp.ClippedSumNoiseMultiplier(p.accounting(), p.Epsilon, p.rate, s.Rounds*p.perRound, p.Delta, nil)
		if err != nil {
			return bad("privacy", "%v", err)
		}
		p.NoiseMultiplier = z
	}
	if err := p.adaptive(s); err != nil {
		return err
	}
	p.orders = dp.DefaultOrders()
	step, err := dp.ClippedSumRDP(p.accounting(), p.rate, p.NoiseMultiplier, p.perRound, p.orders)
	if err != nil {
		return bad("privacy", "%v", err)
	}
	p.step, p.maxRounds = step, 0
	// The budget allows rounds while ε stays within it: find the last one.
	lo, hi := uint64(0), uint64(1)
	for p.fits(hi) {
		lo, hi = hi, 2*hi
		if hi > 1<<40 {
			p.maxRounds = math.MaxUint64
			return nil
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if p.fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	p.maxRounds = lo
	if lo == 0 {
		return bad("privacy", "not one round fits ε = %v at noise multiplier %v and sampling rate %v (%s sampling)", p.Epsilon, p.NoiseMultiplier, p.rate, p.accounting())
	}
	if s.Rounds > 0 && uint64(s.Rounds) > lo {
		return bad("rounds", "%d rounds would spend more than ε = %v (the budget allows %d at noise multiplier %v)", s.Rounds, p.Epsilon, lo, p.NoiseMultiplier)
	}
	return nil
}

// fits reports whether rounds rounds stay within the budget.
func (p *Privacy) fits(rounds uint64) bool {
	e, err := p.spent(rounds)
	return err == nil && e <= p.Epsilon
}

// MaxRounds is how many rounds the budget allows.
func (p *Privacy) MaxRounds() uint64 { return p.maxRounds }

// Spent is the ε after rounds committed rounds of a task with this spec.
func (s *Spec) Spent(rounds uint64) (float64, error) {
	if s.Privacy == nil {
		return 0, nil
	}
	return s.Privacy.spent(rounds)
}

func (p *Privacy) spent(rounds uint64) (float64, error) {
	if p.step == nil {
		return 0, fmt.Errorf("privacy accounting: the spec was not normalized")
	}
	rdp := make([]float64, len(p.step))
	for i, r := range p.step {
		rdp[i] = r * float64(rounds)
	}
	e, _, err := dp.Epsilon(p.orders, rdp, p.Delta)
	if err != nil {
		return 0, fmt.Errorf("privacy accounting: %w", err)
	}
	return e, nil
}

// central checks the spec for user-level DP-FedAvg.
func (p *Privacy) central(s *Spec) error {
	if s.Fraction == 0 {
		return bad("fraction", "user-level DP samples each agent with probability fraction: set fraction, not agents_per_round")
	}
	if s.OverSelect > 1 {
		return bad("over_select", "user-level DP's accounting assumes each agent is sampled with probability fraction: over-selection would break it")
	}
	s.OverSelect = 1
	switch s.Strategy.Name {
	case "median", "trimmed_mean", "krum", "multikrum":
		return bad("strategy", "%s needs individual updates: user-level DP bounds one agent's effect on a sum; use a FedAvg-family strategy", s.Strategy.Name)
	}
	if p.MinRecords != 0 {
		return bad("privacy.min_records", "is for mode %q", Record)
	}
	if p.Mode == Central && (p.MinAgents != 0 || p.MaxAgents != 0 || p.Bits != 0 || p.ModClip != 0) {
		return bad("privacy", "min_agents, max_agents, bits and mod_clip are for mode %q", Distributed)
	}
	p.rate, p.perRound, p.fraction = s.Fraction, 1, s.Fraction
	switch p.Sampling {
	case "", string(dp.Poisson):
		if p.Population != 0 {
			return bad("privacy.population", "is for sampling %q", dp.Fixed)
		}
	case string(dp.Fixed):
		if p.Population < 1 {
			return bad("privacy.population", "required with sampling %q: the fewest eligible agents a round may sample from (the accountant's n), got %d", dp.Fixed, p.Population)
		}
		p.size = int(math.Round(s.Fraction * float64(p.Population)))
		if p.size < 1 {
			return bad("fraction", "%v of privacy.population %d samples no agent: fixed-size sampling takes round(fraction × population) agents a round", s.Fraction, p.Population)
		}
		if s.SecureAggregation && p.size < MinSecureAgents {
			return bad("fraction", "fixed-size sampling takes %d agents a round (fraction %v of population %d), fewer than secure aggregation's %d",
				p.size, s.Fraction, p.Population, MinSecureAgents)
		}
		p.rate = float64(p.size) / float64(p.Population)
	default:
		return bad("privacy.sampling", "%q: want %q (each agent independently with probability fraction) or %q (round(fraction × population) agents without replacement)",
			p.Sampling, dp.Poisson, dp.Fixed)
	}
	return nil
}

// distributed checks the spec for distributed DP (DDGauss under secure aggregation):
// the sampling and accounting of central DP, the noise added by the agents.
func (p *Privacy) distributed(s *Spec) error {
	if !s.SecureAggregation {
		return bad("privacy.mode", "distributed DP adds the noise in the agents and needs secure aggregation to sum it: set \"secure_aggregation\": true")
	}
	if err := p.central(s); err != nil {
		return err
	}
	if p.PerLayer {
		return bad("privacy.per_layer", "is for mode %q", Central)
	}
	if p.MinAgents < MinSecureAgents {
		return bad("privacy.min_agents", "required for mode %q: the fewest agents whose noise a round's sum carries (at least %d), got %d",
			Distributed, MinSecureAgents, p.MinAgents)
	}
	if p.MaxAgents == 0 {
		p.MaxAgents = 16 * p.MinAgents
	}
	if p.MaxAgents < p.MinAgents {
		return bad("privacy.max_agents", "%d is fewer than min_agents %d", p.MaxAgents, p.MinAgents)
	}
	if p.FixedSize() && p.MinAgents > p.size {
		return bad("privacy.min_agents", "%d is more than the %d agents a round samples (fixed-size sampling: round(fraction × population))", p.MinAgents, p.size)
	}
	if p.Bits == 0 {
		p.Bits = 32
	}
	if p.Bits < 8 || p.Bits > 32 {
		return bad("privacy.bits", "must be in [8, 32] (the sum is taken modulo 2^bits inside fedq's 32-bit secure aggregation), got %d", p.Bits)
	}
	if p.ModClip == 0 {
		p.ModClip = 1e-6
	}
	if !(p.ModClip > 0 && p.ModClip < 1) {
		return bad("privacy.mod_clip", "must be in (0, 1), got %v", p.ModClip)
	}
	switch {
	case s.Quorum == 0:
		s.Quorum = p.MinAgents
	case s.Quorum < p.MinAgents:
		return bad("quorum", "%d is below privacy.min_agents %d: a round with fewer agents would carry too little noise", s.Quorum, p.MinAgents)
	}
	return nil
}

// PlannedAgents is, for mode distributed, how many agents' noise a round that sampled
// sampled agents is planned for: the sampled agents less a margin for dropouts — the
// expected dropouts (dropout, secagg.dropout) plus three standard deviations — and never
// fewer than MinAgents. Each agent adds 1/planned of the noise's variance, so a sum of
// at least planned survivors carries the whole noise, and a round with fewer survivors
// is not committed. Planning per round, rather than for MinAgents always, spares the
// sum the noise that the sampling's spread would otherwise cost (√(expected/MinAgents)
// times the central noise).
func (p *Privacy) PlannedAgents(sampled int, dropout float64) int {
	n := float64(sampled)
	margin := int(math.Ceil(dropout*n + 3*math.Sqrt(n*dropout*(1-dropout))))
	return min(max(p.MinAgents, sampled-margin), p.MaxAgents)
}

// Plan is a distributed-DP round's encoding for a model of dim parameters, with the
// rotation drawn from seed and the noise planned for agents agents (see PlannedAgents).
func (p *Privacy) Plan(dim int, seed [32]byte, agents int) (*dp.Distributed, error) {
	return dp.PlanDistributed(dp.DistributedPlan{Dim: dim, Clip: p.Clip, NoiseMultiplier: p.NoiseMultiplier,
		MinAgents: p.MinAgents, MaxAgents: p.MaxAgents, Agents: agents, Bits: p.Bits, ModClip: p.ModClip, Seed: seed})
}

// adaptive checks adaptive clipping once the noise multiplier is known; expected is the
// expected number of participants when the task does not say (0 if unknown).
func (p *Privacy) adaptive(s *Spec) error {
	a := p.AdaptiveClip
	if a == nil {
		return nil
	}
	if p.Mode != Central {
		return bad("privacy.adaptive_clip", "is for mode %q", Central)
	}
	if a.Quantile == 0 {
		a.Quantile = 0.5
	}
	if a.LR == 0 {
		a.LR = 0.2
	}
	switch {
	case !(a.Quantile > 0 && a.Quantile < 1):
		return bad("privacy.adaptive_clip.quantile", "must be in (0, 1), got %v", a.Quantile)
	case !(a.LR > 0) || math.IsInf(a.LR, 0):
		return bad("privacy.adaptive_clip.lr", "must be positive, got %v", a.LR)
	case a.CountNoise < 0 || math.IsNaN(a.CountNoise) || math.IsInf(a.CountNoise, 0):
		return bad("privacy.adaptive_clip.count_noise", "must be ≥ 0, got %v", a.CountNoise)
	case a.CountNoise == 0:
		return bad("privacy.adaptive_clip.count_noise", "required: the noise on the count of unclipped updates (the paper uses a twentieth of the expected participants)")
	}
	if 2*a.CountNoise <= p.NoiseMultiplier {
		return bad("privacy.adaptive_clip.count_noise", "%v is too small for noise multiplier %v: it must exceed half of it, or the count would use the whole budget",
			a.CountNoise, p.NoiseMultiplier)
	}
	return nil
}

// record checks the spec for record-level DP-SGD.
func (p *Privacy) record(s *Spec) error {
	if p.PerLayer {
		return bad("privacy.per_layer", "is for mode %q (DP-SGD clips each record's whole gradient)", Central)
	}
	if s.Train.LocalSteps < 1 {
		return bad("train.local_steps", "record-level DP is accounted per step: set local_steps instead of epochs")
	}
	if p.Sampling != "" && p.Sampling != string(dp.Poisson) {
		return bad("privacy.sampling", "%q is for the user-level modes (%q, %q): DP-SGD samples records by Poisson sampling", p.Sampling, Central, Distributed)
	}
	if p.Population != 0 {
		return bad("privacy.population", "is for sampling %q of the user-level modes", dp.Fixed)
	}
	if p.MinRecords < 1 {
		return bad("privacy.min_records", "must be at least 1: the fewest labelled records an agent may hold (the accountant's rate is batch / min_records)")
	}
	p.rate = min(1, float64(s.Train.Batch)/float64(p.MinRecords))
	p.perRound = s.Train.LocalSteps
	return nil
}
