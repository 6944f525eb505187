package console

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/browsertest"
	"github.com/ehrbridge/ehrbridge/mappings"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// Every screen renders in Chromium under the console's Content-Security-
// Policy without a script error or a policy violation (the harness fails
// the test on either), the live dashboard refreshes itself, and an
// auditor's reveal shows the message as a tree with HL7 names and the ops
// of the running set.
func TestScreensInABrowser(t *testing.T) {
	f := newFixture(t)
	set, err := mappings.Load([]string{"../../configs/mappings/healthcloud"}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	f.con.opts.Mappings = func() *mappings.Set { return set }
	f.con.opts.MappingPaths = []string{"../../configs/mappings/healthcloud"}
	msg, err := os.ReadFile("../../configs/samples/hl7v2/ADT-A01-01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	id := f.addPayload("MSG00001", "test1^2.16.1^HCD|PATID1234", "ADT^A01", string(msg), checkpoint.Dead, "on Account (op 1: upsert by EHR_Patient_Key__c, mapping 10_adt_patient): FIELD_CUSTOM_VALIDATION_EXCEPTION")
	f.mu.Lock()
	f.overview = Overview{Ready: true, Sources: []Endpoint{{ID: "mllp/ehr", Name: "ehr", Kind: "MLLP listener", LogSource: "ehr", State: "listening",
		Counters: []Counter{{Name: "frames received", Value: 1, Rate: true}}}}}
	f.mu.Unlock()

	b := browsertest.New(t)
	b.Navigate(f.srv.URL + Prefix)
	b.WaitVisible("#signin-form")
	// With the keyboard only: type the account, Tab to the token, Enter.
	b.Type("#account", "aude")
	b.Press("\t")
	if f := b.Focused(); f.ID != "token" {
		t.Fatalf("Tab from the account goes to %+v, not the token", f)
	}
	b.Type("#token", auditorToken+"\r")
	b.WaitText("h1", "Dashboard")
	b.WaitText("#live-state", "updated") // console.js refreshed the live part
	b.Screenshot("dashboard")
	b.Navigate(f.srv.URL + Prefix + "messages?authority=test1%5E2.16.1%5EHCD&mrn=PATID1234")
	b.WaitText("#results", "FIELD_CUSTOM_VALIDATION_EXCEPTION")
	b.Click("#results tbody a")
	b.WaitVisible("#reveal")
	b.Click("#reveal")
	b.WaitVisible("#h-tree")
	b.Screenshot("record-revealed")
	txt := b.Text("main")
	for _, want := range []string{"Patient Identifier List", "PATID1234", "upsert Account", "EHR_Patient_Key__c"} {
		if !strings.Contains(txt, want) {
			t.Errorf("the revealed record lacks %q", want)
		}
	}
	for _, p := range []string{"patients", "conflicts", "workbench"} {
		b.Navigate(f.srv.URL + Prefix + p)
		b.WaitVisible("main h1")
	}
	_ = id
}
