package protocol

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestTaskOfferSemi(t *testing.T) {
	offer := func(s *SemiParams) *TaskOffer {
		return &TaskOffer{TaskID: "t", Round: 1, Kind: TaskTrain, Config: TrainConfig{Epochs: 1, Batch: 10, LR: 0.1}, Semi: s}
	}
	for _, tc := range []struct {
		name string
		semi *SemiParams
		want string // empty: valid
	}{
		{"absent", nil, ""},
		{"fixmatch", &SemiParams{Threshold: 0.95, LambdaU: 1, Ratio: 7}, ""},
		{"τ = 1", &SemiParams{Threshold: 1, LambdaU: 1, Ratio: 1}, ""},
		{"static", &SemiParams{Threshold: 0.95, LambdaU: 1, Ratio: 7, Static: true}, ""},
		{"τ = 0", &SemiParams{Threshold: 0, LambdaU: 1, Ratio: 7}, "Threshold"},
		{"τ > 1", &SemiParams{Threshold: 1.01, LambdaU: 1, Ratio: 7}, "Threshold"},
		{"τ NaN", &SemiParams{Threshold: math.NaN(), LambdaU: 1, Ratio: 7}, "Threshold"},
		{"λu 0", &SemiParams{Threshold: 0.9, Ratio: 7}, "LambdaU"},
		{"λu inf", &SemiParams{Threshold: 0.9, LambdaU: math.Inf(1), Ratio: 7}, "LambdaU"},
		{"ratio 0", &SemiParams{Threshold: 0.9, LambdaU: 1}, "Ratio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := offer(tc.semi).Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if err := WriteMessage(&buf, offer(tc.semi)); err != nil {
					t.Fatal(err)
				}
				got, err := Expect[*TaskOffer](NewReader(&buf, MaxFrameSize).Read())
				if err != nil {
					t.Fatal(err)
				}
				if (got.Semi == nil) != (tc.semi == nil) || (got.Semi != nil && *got.Semi != *tc.semi) {
					t.Fatalf("round trip: %+v, want %+v", got.Semi, tc.semi)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "TaskOffer.Semi."+tc.want) {
				t.Fatalf("error %v, want one naming TaskOffer.Semi.%s", err, tc.want)
			}
		})
	}
}
