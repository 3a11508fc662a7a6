package agent

import (
	"context"

	"github.com/fedq/fedq/compute"
	"github.com/fedq/fedq/compute/dataset"
	"github.com/fedq/fedq/protocol"
)

// FeatureSemi is the capability feature of agents that train semi-supervised
// (TaskOffer.Semi).
const FeatureSemi = "semi"

// trainSemi is local training with FixMatch as an offer's Semi asks; truth, when not
// nil, scores the pseudo-labels (simulation). It returns the pseudo-labelling metrics
// the update reports: pseudo_coverage (the share of pseudo-labels at or above τ) and,
// with truth, pseudo_accuracy (the share of those that were right).
func trainSemi(ctx context.Context, m *compute.Model[float32], opt compute.Optimizer[float32], data *dataset.Dataset,
	cfg compute.TrainConfig, p *protocol.SemiParams, truth []int32) (compute.TrainResult, map[string]float64, error) {
	if len(truth) != data.Len() {
		truth = nil
	}
	res, err := compute.TrainSemi(ctx, m, opt, data, cfg, compute.Semi{Threshold: p.Threshold, LambdaU: p.LambdaU, Ratio: int(p.Ratio), Static: p.Static, Truth: truth})
	if err != nil {
		return res.TrainResult, nil, err
	}
	metrics := map[string]float64{"pseudo_coverage": res.Coverage()}
	if truth != nil {
		metrics["pseudo_accuracy"] = res.PseudoAccuracy()
	}
	return res.TrainResult, metrics, nil
}
