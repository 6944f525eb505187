package crmcheck

import (
	"bytes"
	"strings"
	"testing"
)

// The text checklist folds one check of one field made at several mapping
// lines into one line; a different result or message stays its own line.
func TestWriteTextMergesPositions(t *testing.T) {
	r := &Report{CRM: "salesforce", Endpoint: "https://example.my.salesforce.com"}
	for _, pos := range []string{"a.yaml:3:7", "b.yaml:9:7", "c.yaml:4:7"} {
		r.add(Item{Object: "Account", Field: "LastName", Check: "field present", OK: true, Pos: pos})
	}
	r.add(Item{Object: "Account", Field: "Code__c", Check: "length", Blocker: true, Message: "too long", Pos: "a.yaml:5:7"})
	r.add(Item{Object: "Account", Field: "Code__c", Check: "length", Blocker: true, Message: "too long", Pos: "b.yaml:6:7"})
	r.add(Item{Object: "Account", Field: "Code__c", Check: "length", Blocker: true, Message: "other", Pos: "c.yaml:7:7"})
	r.finish()
	var b bytes.Buffer
	r.WriteText(&b)
	got := b.String()
	for _, want := range []string{
		"  ok       Account.LastName: field present  (a.yaml:3:7 and 2 more)\n",
		"  BLOCKER  Account.Code__c: length: too long  (a.yaml:5:7 and 1 more)\n",
		"  BLOCKER  Account.Code__c: length: other  (c.yaml:7:7)\n",
		"NOT READY: 3 blockers, 0 warnings, 6 checks\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("checklist:\n%s\nwant line %q", got, want)
		}
	}
	if strings.Count(got, "LastName") != 1 {
		t.Errorf("LastName printed more than once:\n%s", got)
	}
}
