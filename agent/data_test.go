package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDataFlag(t *testing.T) {
	dir := t.TempDir()
	withHeader := filepath.Join(dir, "h.csv")
	noHeader := filepath.Join(dir, "n.csv")
	os.WriteFile(withHeader, []byte("x,y,label\n1,2,0\n3,4,1\n5,6,\n"), 0o600)
	os.WriteFile(noHeader, []byte("1,2,0\n3,4,1\n"), 0o600)
	for _, tc := range []struct {
		flag                    string
		examples, labelled, cls int
	}{
		{"a=" + withHeader, 3, 2, 2},
		{"b=" + noHeader, 2, 2, 2},
		{"c=" + withHeader + UnlabelledSuffix, 3, 0, 2},
		{"d=" + noHeader + UnlabelledSuffix, 2, 0, 2},
	} {
		ld, err := ParseDataFlag(tc.flag)
		if err != nil {
			t.Fatalf("%s: %v", tc.flag, err)
		}
		info := Describe([]*LocalData{ld})[0]
		if int(info.Examples) != tc.examples || int(info.Labelled) != tc.labelled || int(info.Unlabelled) != tc.examples-tc.labelled ||
			int(info.Classes) != tc.cls || info.Name != ld.Name {
			t.Errorf("%s: %+v", tc.flag, info)
		}
	}
	for _, tc := range []struct{ flag, want string }{
		{"nameonly", "NAME=SOURCE"},
		{"=x.csv", "NAME=SOURCE"},
		{"a=" + filepath.Join(dir, "missing.csv"), "missing.csv"},
		{"a=" + filepath.Join(dir, "nodir"), "want mnist"},
		{"a=" + withHeader + "x", "want mnist"},
	} {
		if _, err := ParseDataFlag(tc.flag); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseDataFlag(%q) = %v, want %q", tc.flag, err, tc.want)
		}
	}
}
