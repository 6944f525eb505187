package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/config"
)

// A set with lint warnings loads (they do not stop it), and the daemon logs
// each one, so an admin who never runs `ehrbridge lint` learns of a key
// whose parts run together or that ignores its identifier's namespace.
// The shipped set logs none.
func TestMappingLintWarningsLogged(t *testing.T) {
	dir := t.TempDir()
	m := "when: {hl7: ORU}\nops:\n  - object: A\n    key_field: K\n    key: concat(OBR-3.1, OBX-3.1)\n    fields: {X: OBX-5}\n"
	if err := os.WriteFile(filepath.Join(dir, "oru.yaml"), []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want int
	}{{dir, 2}, {filepath.Join("..", "..", "configs", "mappings", "healthcloud"), 0}} {
		var buf bytes.Buffer
		cfg := &config.Config{Mappings: config.MappingsConfig{Paths: []string{tc.path}}}
		if _, err := newMappingSet(cfg, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if n := strings.Count(buf.String(), `msg="mapping lint warning"`); n != tc.want {
			t.Errorf("%s: %d lint warnings logged, want %d:\n%s", tc.path, n, tc.want, buf.String())
		}
		if tc.want > 0 && !strings.Contains(buf.String(), "oru.yaml:5:10: warning: key: parts 1 and 2 of concat() run together") {
			t.Errorf("the warning does not say where:\n%s", buf.String())
		}
	}
}
