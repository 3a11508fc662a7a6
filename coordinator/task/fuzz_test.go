package task

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds task specs — what `fedq task submit` reads from disk and the coordinator
// receives from an admin over the network — to Parse. It must never panic; a spec it
// accepts must be valid, and must survive a JSON round trip unchanged (what the store
// keeps is what was accepted).
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`,
		`{"name":"t","model":"2nn","dataset":"mnist","rounds":-1}`,
		`{"name":"t","model":{"input":[4],"classes":2,"layers":[{"type":"dense","out":2}]},"dataset":"d"}`,
		`{"name":"t","model":"2nn","dataset":"mnist","deadlines":{"train":"-1s"}}`,
		`{"name":"t","model":"2nn","dataset":"mnist","semi":{"mode":"labels-at-agents","threshold":2}}`,
		`{"name":"t","model":"2nn","dataset":"mnist"} {"x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a spec with error %v", err)
			}
			return
		}
		if err := s.Normalize(); err != nil {
			t.Fatalf("an accepted spec no longer validates: %v\n%s", err, data)
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal an accepted spec: %v", err)
		}
		s2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parse an accepted spec: %v\n%s", err, again)
		}
		if third, _ := json.Marshal(s2); string(third) != string(again) {
			t.Fatalf("round trip changed the spec:\n%s\n%s", again, third)
		}
	})
}
