package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// A small FHIR backfill runs to the end and reports its figures: every
// resource done in the CRM, a handful of CRM requests.
func TestFHIRSmoke(t *testing.T) {
	var b strings.Builder
	rep, err := FHIR(context.Background(), FHIROptions{Mappings: filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"),
		Patients: 25, Encounters: 2, PageSize: 7, Latency: time.Millisecond, Dir: t.TempDir()}, &b)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resources != 75 || rep.FHIRPages < 8 || rep.CRMRequests == 0 || rep.CRMRequests > 20 {
		t.Errorf("report %+v", rep)
	}
	for _, want := range []string{"resources/s", "per resource"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
