package serve

import (
	"encoding/json"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	cases := []struct {
		name, in, want string // want: the string a JSON decoder reads back
	}{
		{"plain", "2nn", "2nn"},
		{"empty", "", ""},
		{"quotes and backslash", `a"b\c`, `a"b\c`},
		{"control characters", "a\nb\tc\x00d\x1f", "a\nb\tc\x00d\x1f"},
		{"html", "<a>&", "<a>&"},
		{"unicode", "Zürich ✓", "Zürich ✓"},
		{"invalid UTF-8", "id\xff\xfe", "id\ufffd\ufffd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := []byte(`{"k":`)
			b := appendJSONString(prefix, c.in)
			if string(b[:len(prefix)]) != string(prefix) {
				t.Fatalf("prefix overwritten: %q", b)
			}
			b = append(b, '}')
			var got struct{ K string }
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %q: %v", b, err)
			}
			if got.K != c.want {
				t.Fatalf("read back %q, want %q (wrote %q)", got.K, c.want, b)
			}
		})
	}
}
