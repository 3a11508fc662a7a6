package task

import (
	"errors"
	"testing"
)

func TestSemiSpec(t *testing.T) {
	const base = `"name":"s","model":"cnn","dataset":"mnist","train":{"epochs":1,"batch":10,"lr":0.05},"fraction":0.1`
	for _, tc := range []struct {
		name, semi, field string // field empty: valid
		extra             string
	}{
		{"coordinator defaults", `{"mode":"labels-at-coordinator","labelled":"mnist-600"}`, "", ""},
		{"agents defaults", `{"mode":"labels-at-agents"}`, "", ""},
		{"agents with threshold", `{"mode":"labels-at-agents","threshold":0.8,"ratio":3,"lambda_u":2}`, "", ""},
		{"static pseudo-labels", `{"mode":"labels-at-coordinator","labelled":"x","pseudo_labels":"static"}`, "", ""},
		{"unknown pseudo-labels", `{"mode":"labels-at-coordinator","labelled":"x","pseudo_labels":"later"}`, "semi.pseudo_labels", ""},
		{"central DP", `{"mode":"labels-at-agents"}`, "", `,"rounds":10,"privacy":{"mode":"central","clip":1,"epsilon":4,"delta":1e-5}`},
		{"no mode", `{}`, "semi.mode", ""},
		{"unknown mode", `{"mode":"labels-everywhere"}`, "semi.mode", ""},
		{"threshold above 1", `{"mode":"labels-at-agents","threshold":1.5}`, "semi.threshold", ""},
		{"negative threshold", `{"mode":"labels-at-agents","threshold":-0.1}`, "semi.threshold", ""},
		{"negative λu", `{"mode":"labels-at-agents","lambda_u":-1}`, "semi.lambda_u", ""},
		{"negative ratio", `{"mode":"labels-at-agents","ratio":-2}`, "semi.ratio", ""},
		{"coordinator without labelled set", `{"mode":"labels-at-coordinator"}`, "semi.labelled", ""},
		{"agents with a labelled set", `{"mode":"labels-at-agents","labelled":"x"}`, "semi.labelled", ""},
		{"bad finetune lr", `{"mode":"labels-at-coordinator","labelled":"x","finetune":{"lr":-1}}`, "semi.finetune.lr", ""},
		{"bad finetune momentum", `{"mode":"labels-at-coordinator","labelled":"x","finetune":{"momentum":1}}`, "semi.finetune.momentum", ""},
		{"plain finetune", `{"mode":"labels-at-coordinator","labelled":"x","finetune":{"augment":"none"}}`, "", ""},
		{"unknown finetune augmentation", `{"mode":"labels-at-coordinator","labelled":"x","finetune":{"augment":"strong"}}`, "semi.finetune.augment", ""},
		{"negative warmup", `{"mode":"labels-at-coordinator","labelled":"x","warmup_epochs":-1}`, "semi.warmup_epochs", ""},
		{"record DP", `{"mode":"labels-at-agents"}`, "semi", `,"rounds":10,"privacy":{"mode":"record","clip":1,"epsilon":4,"delta":1e-5,"min_records":100},"train":{"local_steps":10,"batch":10,"lr":0.05}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			if tc.extra != "" && tc.field == "semi" {
				b = `"name":"s","model":"cnn","dataset":"mnist","fraction":0.1`
			}
			s, err := Parse([]byte(`{` + b + `,"semi":` + tc.semi + tc.extra + `}`))
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Semi.Threshold <= 0 || s.Semi.LambdaU <= 0 || s.Semi.Ratio < 1 || s.Semi.PseudoLabels == "" {
					t.Fatalf("defaults not filled: %+v", s.Semi)
				}
				if s.Semi.Mode == LabelsAtCoordinator && (s.Semi.WarmupEpochs != DefaultWarmupEpochs || s.Semi.FineTune.Batch != 10 || s.Semi.FineTune.Epochs != DefaultFineTune || s.Semi.FineTune.Augment == "") {
					t.Fatalf("coordinator defaults not filled: %+v", s.Semi)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v, want one on field %s", err, tc.field)
			}
		})
	}
}
