package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// fhirConfig is the daemon configuration the FHIR tests share.
type fhirConfig struct {
	file, yaml, adminAddr, sandboxAddr string
}

// writeFHIRConfig writes dir/ehrbridge.yaml: one FHIR source named
// ehrfhir (baseURL, types Patient and Encounter, then the source's other
// keys, one per line as they would stand under it), the Health Cloud
// mappings, an MLLP source and the admin endpoint on free loopback ports,
// and the CRM sandbox: embedded, or the sandbox process already listening
// at sandboxAddr.
func writeFHIRConfig(t *testing.T, dir, sandboxAddr, baseURL, source string) fhirConfig {
	t.Helper()
	embed := sandboxAddr == ""
	if embed {
		sandboxAddr = freeAddr(t)
	}
	c := fhirConfig{file: filepath.Join(dir, "ehrbridge.yaml"), adminAddr: freeAddr(t), sandboxAddr: sandboxAddr}
	var extra strings.Builder
	for line := range strings.Lines(strings.TrimSpace(source)) {
		extra.WriteString("      " + line)
	}
	c.yaml = fmt.Sprintf(`data_dir: %s
admin:
  listen: %s
mappings:
  paths: [%s]
  timezone: UTC
crm:
  sandbox:
    embed: %t
    listen: %s
  pipeline:
    linger: 100ms
sources:
  mllp:
    - name: ehr
      listen: %s
  fhir:
    - name: ehrfhir
      base_url: %s
      types: [Patient, Encounter]
%s
`, filepath.Join(dir, "data"), c.adminAddr, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"),
		embed, sandboxAddr, freeAddr(t), baseURL, extra.String())
	if err := os.WriteFile(c.file, []byte(c.yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}
