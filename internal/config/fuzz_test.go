package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic or hang, and that a
// failure is always a non-empty Problems with positions inside the file.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/bad/*.yaml", "testdata/good/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a\n  <<: *a\n"))
	f.Add([]byte("sources: {mllp: [{name: a, listen: ':1', max_frame_size: ${X:-1KiB}}]}"))
	lookup := func(name string) (string, bool) {
		if strings.HasPrefix(name, "U") {
			return "", false
		}
		return "v" + name, true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, lookup)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		if c != nil {
			t.Fatal("config returned with an error")
		}
		ps, ok := err.(Problems)
		if !ok || len(ps) == 0 {
			t.Fatalf("error %T %v, want non-empty Problems", err, err)
		}
		lines := lineCount(toUTF8(data))
		for _, p := range ps {
			if p.File != "fuzz.yaml" || p.Line < 0 || p.Line > lines || p.Msg == "" {
				t.Fatalf("bad problem %+v for %d lines", p, lines)
			}
		}
	})
}
