package pipeline

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Issue 30's story on the sandbox: a CRM admin activates a validation
// rule on Account, a patient's record dies for it (permanent: no retry)
// with the code in its reason and no patient data; the admin removes the
// rule, the record is requeued and is done.
func TestValidationRuleDeadThenRequeued(t *testing.T) {
	r := newRig(t)
	fault := func(method, body string) {
		req, _ := http.NewRequest(method, r.base+"/sandbox/v1/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("fault %s %s: %v %v", method, body, err, resp)
		}
		resp.Body.Close()
	}
	fault("POST", `{"validation_rule":{"object":"Account","message":"Insurance must be verified before saving"}}`)
	r.send(t, adt("A01", "VR1", "RULEREFUSED", "ANN"))
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Dead: 1})
	if n := r.p.Retried.Load(); n != 0 {
		t.Errorf("the refused record was retried %d times", n)
	}
	dead, err := r.log.List(checkpoint.Dead, 0, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead %v %v", dead, err)
	}
	if !strings.Contains(dead[0].Reason, "FIELD_CUSTOM_VALIDATION_EXCEPTION") || strings.Contains(dead[0].Reason, "RULEREFUSED") ||
		strings.Contains(dead[0].Reason, "VR1") {
		t.Errorf("reason %q", dead[0].Reason)
	}
	if n := len(r.sb.Records("Account")); n != 0 {
		t.Errorf("%d accounts written under the rule", n)
	}
	fault("DELETE", "")
	if err := r.log.Requeue(dead[0].ID); err != nil {
		t.Fatal(err)
	}
	r.p.Notify()
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Dead: 0, checkpoint.Done: 1})
	if accts := r.sb.Records("Account"); len(accts) != 1 || accts[0]["LastName"] != "RULEREFUSED" {
		t.Errorf("accounts after the requeue: %v", accts)
	}
	// The console's per-source counts: one death, then one done (counted
	// just after the log settles them).
	src := dead[0].Source
	want := Settled{Done: 1, Dead: 1}
	for deadline := time.Now().Add(5 * time.Second); r.p.BySource()[src] != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.p.BySource()[src]; got != want {
		t.Errorf("settled for source %q: %+v, want 1 dead then 1 done", src, got)
	}
}
