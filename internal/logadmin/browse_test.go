package logadmin

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// browseFixture is a log of four patients' records, served by the API:
// 1 H1|123 (dead), 2 H2|123 (done), 3 H1|1234, 4 123^H1 (ehr.LaneKey's
// form of the same patient as 1), 5 H1|123 (3, 4 and 5 retrying, held; 5
// holds its lane), and a conflict on record 2.
func browseFixture(t *testing.T) (*checkpoint.Log, string, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, e := range []checkpoint.Entry{
		{Key: "mllp|EPIC|HOSP|C1", Type: "ADT^A01", Lane: "H1|123", Payload: []byte("one")},
		{Key: "mllp|EPIC|HOSP|C2", Type: "ADT^A08", Lane: "H2|123", Payload: []byte("two")},
		{Key: "mllp|EPIC|HOSP|C3", Type: "ORU^R01", Lane: "H1|1234", Payload: []byte("three")},
		{Key: "mllp|EPIC|HOSP|C4", Type: "ADT^A08", Lane: "123^H1", Payload: []byte("four")},
		{Key: "mllp|EPIC|HOSP|C5", Type: "ADT^A08", Lane: "H1|123", Payload: []byte("five")},
		{Key: "mllp|EPIC|HOSP|C2", Type: "ADT^A08", Lane: "H2|123", Payload: []byte("two, changed")},
	} {
		e.Source, e.Kind, e.Hash, e.Ack = "mllp", checkpoint.KindHL7v2, sha256.Sum256(e.Payload), []byte("MSA|AA|"+e.Key)
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := l.Claim(10)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		var s checkpoint.Settlement
		switch r.ID {
		case 1:
			s = checkpoint.Settlement{ID: 1, State: checkpoint.Dead, Reason: "crm permanent error INVALID_FIELD on Contact",
				Code: "INVALID_FIELD", Op: 1, Object: "Contact", Action: "upsert by MRN__c", Detail: "Smith is not valid"}
		case 2:
			s = checkpoint.Settlement{ID: 2, State: checkpoint.Done, Targets: []string{"003A"}}
		default:
			s = checkpoint.Settlement{ID: r.ID, State: checkpoint.Retrying, RetryAt: r.Received.Add(1e12), Reason: "held: no patient yet"}
		}
		if err := l.Settle([]checkpoint.Settlement{s}); err != nil {
			t.Fatal(err)
		}
		if r.ID == 1 {
			// 1 left its lane: 5, behind it, is claimed next.
			next, _ := l.Claim(10)
			rs = append(rs, next...)
		}
	}
	srv := httptest.NewServer(API(l, testAccess(dir)))
	t.Cleanup(srv.Close)
	return l, dir, srv
}

func recordIDs(rs []RecordView) []uint64 {
	out := []uint64{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// The API and a Local answer a find alike; a patient is matched through
// every lane key form, never by a prefix, never across authorities; the
// MRN reaches neither the URL nor the audit log.
func TestFindThroughAPIAndLocal(t *testing.T) {
	l, dir, srv := browseFixture(t)
	local := &Local{Log: l, Audit: NewAudit(dir), Via: "cli"}
	local.Audit.System = nil
	me := LocalCaller()
	for _, c := range []struct {
		q    FindRequest
		want []uint64
	}{
		{FindRequest{Authority: "H1", MRN: "123"}, []uint64{5, 4, 1}},
		{FindRequest{Authority: "H2", MRN: "123"}, []uint64{2}},
		{FindRequest{Authority: "H1", MRN: "1234"}, []uint64{3}},
		{FindRequest{Authority: "H1", MRN: "12"}, []uint64{}},
		{FindRequest{Authority: "", MRN: "123"}, []uint64{}},
		{FindRequest{Authority: "H1", MRN: " "}, []uint64{}},
		{FindRequest{Authority: "H1", MRN: "123", States: []string{"dead"}}, []uint64{1}},
		{FindRequest{Type: "ADT", States: []string{"retrying"}}, []uint64{5, 4}},
		{FindRequest{ControlID: "C3"}, []uint64{3}},
		{FindRequest{ControlID: "EPIC|HOSP|C3"}, []uint64{3}},
		{FindRequest{ControlID: "C"}, []uint64{}},
	} {
		api, err := as(srv, "viewer").Find(Caller{}, c.q)
		if err != nil {
			t.Fatalf("API find %+v: %v", c.q, err)
		}
		loc, err := local.Find(me, c.q)
		if err != nil {
			t.Fatalf("local find %+v: %v", c.q, err)
		}
		if got := recordIDs(api.Records); !slices.Equal(got, c.want) || !slices.Equal(recordIDs(loc.Records), got) {
			t.Errorf("find %+v: API %v, local %v, want %v", c.q, got, recordIDs(loc.Records), c.want)
		}
	}
	if _, err := as(srv, "viewer").Find(Caller{}, FindRequest{States: []string{"lost"}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("unknown state: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, AuditFileName))
	if strings.Contains(string(raw), "|123") || strings.Contains(string(raw), " 123") || strings.Contains(string(raw), "123\"") {
		t.Errorf("the audit log names the MRN:\n%s", raw)
	}
	if !strings.Contains(string(raw), `"action":"find","object":"records of a patient state=dead"`) {
		t.Errorf("no audit line of the find:\n%s", raw)
	}
}

func TestTrace(t *testing.T) {
	l, _, srv := browseFixture(t)
	v, err := as(srv, "viewer").Trace(Caller{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Record.State != "dead" || v.Record.Ack != "MSA|AA|mllp|EPIC|HOSP|C1" || v.Record.Detail != "" {
		t.Errorf("record: %+v", v.Record)
	}
	if len(v.History) != 1 || v.History[0].Code != "INVALID_FIELD" || v.History[0].Object != "Contact" || v.History[0].Op != 1 {
		t.Errorf("history: %+v", v.History)
	}
	var lane []uint64
	for _, r := range v.Lane.Records {
		lane = append(lane, r.ID)
	}
	if !slices.Equal(lane, []uint64{1, 5}) || v.Lane.Holder != 5 || !v.Lane.Records[1].Holds || v.Lane.Records[0].Holds {
		t.Errorf("lane: %+v", v.Lane)
	}
	v, _ = as(srv, "viewer").Trace(Caller{}, 5)
	if v.NextRetry == nil || v.History[0].RetryAt == nil || !v.NextRetry.Equal(*v.History[0].RetryAt) {
		t.Errorf("next retry: %v, history %+v", v.NextRetry, v.History)
	}
	local := &Local{Log: l, Via: "cli", Audit: NewAudit(t.TempDir())}
	local.Audit.System = nil
	lv, err := local.Trace(LocalCaller(), 1)
	if err != nil || len(lv.Lane.Records) != 2 || lv.Lane.Holder != 5 {
		t.Errorf("local trace: %+v %v", lv, err)
	}
	if _, err := as(srv, "viewer").Trace(Caller{}, 99); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("trace of no record: %v", err)
	}
}

// Actions need PermOperate, are audited, and their history names the
// account that made them.
func TestActionsThroughAPI(t *testing.T) {
	l, dir, srv := browseFixture(t)
	if err := as(srv, "viewer").CloseRecord(Caller{}, 1, "handled by phone"); !errors.Is(err, ErrForbidden) {
		t.Errorf("viewer closing: %v", err)
	}
	op := as(srv, "operator")
	if err := op.CloseRecord(Caller{}, 1, ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("close without a reason: %v", err)
	}
	if err := op.CloseRecord(Caller{}, 1, "handled by phone with Mrs Smith"); err != nil {
		t.Fatal(err)
	}
	r, _ := l.Reveal(1)
	if r.State != checkpoint.Skipped || r.Reason != "closed by operator" || r.Detail != "handled by phone with Mrs Smith" {
		t.Errorf("closed: %s %q %q", r.State, r.Reason, r.Detail)
	}
	got, err := op.RetryIDs(Caller{}, []uint64{1, 3, 42})
	if err != nil || !slices.Equal(got.Requeued, []uint64{1}) {
		t.Errorf("retry selection: %+v %v", got, err)
	}
	if err := op.Release(Caller{}, 3); err != nil {
		t.Errorf("release: %v", err)
	}
	if err := op.Release(Caller{}, 2); !errors.Is(err, checkpoint.ErrTransition) {
		t.Errorf("release of a done record: %v", err)
	}
	cv, err := op.ResolveConflict(Caller{}, 1, true)
	if err != nil || cv.Resolution != "accept" || cv.RecordID != 2 {
		t.Fatalf("resolve: %+v %v", cv, err)
	}
	if _, err := op.ResolveConflict(Caller{}, 1, false); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("resolving twice: %v", err)
	}
	if r, _ := l.Reveal(2); r.State != checkpoint.Received || string(r.Payload) != "two, changed" {
		t.Errorf("accepted: %s %q", r.State, r.Payload)
	}
	var kinds []string
	tv, _ := op.Trace(Caller{}, 1)
	for _, e := range tv.History {
		kinds = append(kinds, e.Kind+"/"+e.Actor)
	}
	if !slices.Equal(kinds, []string{"settled/", "closed/operator", "requeued/operator"}) {
		t.Errorf("history of record 1: %v", kinds)
	}
	if h, _ := l.History(3); len(h) != 2 || h[1].Kind != checkpoint.EventHastened || h[1].Actor != "operator" {
		t.Errorf("history of record 3: %+v", h)
	}
	var actions []string
	for _, ev := range auditLines(t, dir) {
		actions = append(actions, ev.Action+" "+ev.Outcome+" "+ev.User)
	}
	for _, want := range []string{"close refused viewer", "close allowed operator", "retry allowed operator", "release allowed operator",
		"resolve allowed operator"} {
		if !slices.Contains(actions, want) {
			t.Errorf("no audit line %q in %v", want, actions)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, AuditFileName))
	if strings.Contains(string(raw), "Smith") {
		t.Error("the close reason reached the audit log")
	}
}

// A Local refuses, and audits the refusal of, an in-process caller (the
// console's signed-in user) without the call's permission.
func TestLocalChecksTheCallersPermission(t *testing.T) {
	l, dir, _ := browseFixture(t)
	local := &Local{Log: l, Audit: NewAudit(dir), Via: "console"}
	local.Audit.System = nil
	viewer := Caller{Name: "vera", Via: "console", Perm: PermView}
	if _, err := local.Find(viewer, FindRequest{States: []string{"dead"}}); err != nil {
		t.Errorf("viewer finding: %v", err)
	}
	if err := local.CloseRecord(viewer, 1, "x"); !errors.Is(err, ErrForbidden) {
		t.Errorf("viewer closing: %v", err)
	}
	if _, err := local.RetryIDs(Caller{Name: "olga", Via: "console", Perm: PermView | PermOperate}, []uint64{1}); err != nil {
		t.Errorf("operator retrying: %v", err)
	}
	if h, _ := l.History(1); h[len(h)-1].Actor != "olga" {
		t.Errorf("history actor: %+v", h)
	}
	lines := auditLines(t, dir)
	if n := len(lines); n != 3 || lines[1].Outcome != "refused" || lines[1].User != "vera" || lines[2].User != "olga" {
		t.Errorf("audit: %+v", lines)
	}
}

func TestPatientLaneKeys(t *testing.T) {
	if got := PatientLaneKeys("GHH", "PATID1234"); !slices.Equal(got, []string{"GHH|PATID1234", "PATID1234^GHH"}) {
		t.Errorf("keys: %q", got)
	}
	if got := PatientLaneKeys("A/B", "1:2"); !slices.Contains(got, "A~2FB|1~3A2") {
		t.Errorf("keysafe form missing: %q", got)
	}
	if got := PatientLaneKeys(" ", "1"); got != nil {
		t.Errorf("blank authority: %q", got)
	}
	for _, s := range []string{"123", "|123", "H|", ""} {
		if _, _, err := ParsePatient(s); err == nil {
			t.Errorf("ParsePatient(%q) accepted", s)
		}
	}
}
