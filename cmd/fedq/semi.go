package main

import (
	"github.com/fedq/fedq/agent"
	"github.com/fedq/fedq/compute/dataset"
)

// coordinatorData loads the coordinator's --data flags: labelled datasets for
// semi-supervised tasks with labels at the coordinator. A dataset without any label is
// refused, since fine-tuning on it would do nothing.
func coordinatorData(flags []string) (map[string]*dataset.Dataset, error) {
	out := map[string]*dataset.Dataset{}
	for _, f := range flags {
		ld, err := agent.ParseDataFlag(f)
		if err != nil {
			return nil, usageError("%v", err)
		}
		if out[ld.Name] != nil {
			return nil, usageError("--data %s: the name %q is given twice", f, ld.Name)
		}
		if agent.Describe([]*agent.LocalData{ld})[0].Labelled == 0 {
			return nil, usageError("--data %s: no example has a label; the coordinator's datasets are for fine-tuning on labels", f)
		}
		out[ld.Name] = ld.Data
	}
	return out, nil
}
