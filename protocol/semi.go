package protocol

import "fmt"

// SemiParams asks an agent to train semi-supervised, with FixMatch: each unlabelled
// example is pseudo-labelled from a weakly augmented view with the model being
// trained, kept when its top probability is at least Threshold, and trained on a
// strongly augmented view; labelled examples are mixed in at Ratio unlabelled per
// labelled, the unlabelled loss weighted by LambdaU. The agent reports
// "pseudo_coverage" (the share kept) and, when it knows the true labels,
// "pseudo_accuracy" in its update's metrics.
type SemiParams struct {
	// Threshold is τ, in (0, 1].
	Threshold float64 `cbor:"1,keyasint,omitempty"`
	// LambdaU weighs the unlabelled loss; > 0.
	LambdaU float64 `cbor:"2,keyasint,omitempty"`
	// Ratio is unlabelled examples per labelled one in a step; ≥ 1.
	Ratio uint32 `cbor:"3,keyasint,omitempty"`
	// Static asks for SemiFL's static pseudo-labels: every unlabelled example is
	// labelled once, before training, with the offered base model, not at every step
	// with the model being trained. (An agent that predates it ignores the key and
	// labels online.)
	Static bool `cbor:"4,keyasint,omitempty"`
}

// validate checks the ranges.
func (s *SemiParams) validate() error {
	if err := checkPosFinite("TaskOffer.Semi.LambdaU", s.LambdaU); err != nil {
		return err
	}
	switch {
	case !(s.Threshold > 0 && s.Threshold <= 1):
		return fmt.Errorf("TaskOffer.Semi.Threshold is %v; it must be in (0, 1]", s.Threshold)
	case s.Ratio < 1:
		return fmt.Errorf("TaskOffer.Semi.Ratio is 0; it must be >= 1")
	}
	return nil
}
