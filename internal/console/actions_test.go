package console

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// add stores a message of patient lane (an "AUTHORITY|MRN" lane key, as
// the shipped sets make them) and settles it as state with reason.
func (f *fixture) add(key, lane, typ string, state checkpoint.State, reason string) uint64 {
	f.t.Helper()
	return f.addPayload(key, lane, typ, "MSH|^~\\&|ADT|HOSP|CRM|X|20250101||"+typ+"|"+key+"|P|2.5.1\rPID|1||SECRET-MRN^^^HOSP^MR||DOE^JANE\r", state, reason)
}

func (f *fixture) addPayload(key, lane, typ, payload string, state checkpoint.State, reason string) uint64 {
	f.t.Helper()
	res, err := f.log.Append(context.Background(), checkpoint.Entry{Key: "ehr|ADT|HOSP|" + key, Source: "ehr", Kind: checkpoint.KindHL7v2, Type: typ,
		Hash: sha256.Sum256([]byte(payload)), Lane: lane, Payload: []byte(payload), Ack: []byte("MSH|^~\\&|CRM|X\rMSA|AA|" + key + "\r"), Received: f.clock()})
	if err != nil {
		f.t.Fatal(err)
	}
	if state == checkpoint.Received {
		return res.ID
	}
	recs, err := f.log.Claim(100)
	if err != nil {
		f.t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.ID != res.ID {
			f.t.Fatalf("claimed record %d, not %d (the fixture settles one at a time)", r.ID, res.ID)
		}
		found = true
	}
	if !found {
		f.t.Fatalf("record %d was not claimed", res.ID)
	}
	s := checkpoint.Settlement{ID: res.ID, State: state, Reason: reason, Detail: "the CRM said: DOE JANE is a duplicate"}
	if state == checkpoint.Retrying {
		s.RetryAt = time.Now().Add(3 * time.Hour)
	}
	if state == checkpoint.Done {
		s.Targets = []string{"003000000000001AAA"}
	}
	if err := f.log.Settle([]checkpoint.Settlement{s}); err != nil {
		f.t.Fatal(err)
	}
	return res.ID
}

func (f *fixture) post(c *http.Client, path string, form url.Values) (int, string) {
	f.t.Helper()
	resp, err := c.PostForm(f.srv.URL+path, form)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, readAll(f.t, resp)
}

func (f *fixture) state(id uint64) checkpoint.State {
	f.t.Helper()
	r, err := f.log.Get(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r.State
}

func TestOperatorRetriesADeadRecord(t *testing.T) {
	f := newFixture(t)
	id := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Dead, "on Contact (op 1: upsert by MRN__c, mapping adt): REQUIRED_FIELD_MISSING")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	_, list := f.get(c, Prefix+"messages?state=dead")
	if !strings.Contains(list, fmt.Sprintf(`href="/ui/records/%d"`, id)) || !strings.Contains(list, "REQUIRED_FIELD_MISSING") {
		t.Fatalf("the dead record is not listed:\n%s", list)
	}
	_, rec := f.get(c, fmt.Sprintf("%srecords/%d", Prefix, id))
	for _, want := range []string{"REQUIRED_FIELD_MISSING", "MSA|AA|C1", "op 1", "Retry…", "Close with a reason…"} {
		if !strings.Contains(rec, want) {
			t.Errorf("record view lacks %q", want)
		}
	}
	if strings.Contains(rec, "SECRET-MRN") || strings.Contains(rec, "DOE JANE") {
		t.Error("the record view shows patient data before a reveal")
	}
	status, confirm := f.get(c, fmt.Sprintf("%sconfirm?do=retry&id=%d", Prefix, id))
	if status != 200 || !strings.Contains(confirm, "Confirm: Retry this record") {
		t.Fatalf("confirm page: %d\n%s", status, confirm)
	}
	if f.state(id) != checkpoint.Dead {
		t.Fatal("showing the confirmation changed the record")
	}
	status, body := f.post(c, fmt.Sprintf("%srecords/%d/retry", Prefix, id), url.Values{"csrf": {csrf}})
	if status != 200 || !strings.Contains(body, "is queued again") {
		t.Fatalf("retry: %d\n%s", status, body)
	}
	if st := f.state(id); st != checkpoint.Received {
		t.Fatalf("after retry the record is %s", st)
	}
	h, err := f.log.History(id)
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.Kind != checkpoint.EventRequeued || last.Actor != "otto" {
		t.Errorf("history's last event: %+v", last)
	}
	if !strings.Contains(f.audit(), fmt.Sprintf(`"action":"retry","object":"record %d","outcome":"allowed","user":"otto"`, id)) {
		t.Errorf("the retry is not audited with its user:\n%s", f.audit())
	}
}

func TestViewerCannotActOrReveal(t *testing.T) {
	f := newFixture(t)
	id := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Dead, "REQUIRED_FIELD_MISSING")
	c := f.client()
	csrf := f.signIn(c, "vera", viewerToken)
	_, rec := f.get(c, fmt.Sprintf("%srecords/%d", Prefix, id))
	if strings.Contains(rec, "Retry…") || strings.Contains(rec, "Reveal the message") {
		t.Error("a viewer is offered actions")
	}
	if status, _ := f.get(c, fmt.Sprintf("%sconfirm?do=retry&id=%d", Prefix, id)); status != http.StatusForbidden {
		t.Errorf("viewer's confirm page: %d", status)
	}
	for _, p := range []string{"retry", "close", "reveal"} {
		status, body := f.post(c, fmt.Sprintf("%srecords/%d/%s", Prefix, id, p), url.Values{"csrf": {csrf}, "reason": {"x"}})
		if status != http.StatusForbidden || !strings.Contains(body, "does not allow this") {
			t.Errorf("viewer's %s: %d", p, status)
		}
		if strings.Contains(body, "SECRET-MRN") {
			t.Errorf("viewer's %s shows the payload", p)
		}
	}
	if f.state(id) != checkpoint.Dead {
		t.Fatal("a viewer changed the record")
	}
	if n := strings.Count(f.audit(), `"outcome":"refused","user":"vera"`); n != 4 {
		t.Errorf("%d refusals audited, want 4:\n%s", n, f.audit())
	}
	if !strings.Contains(f.audit(), fmt.Sprintf(`"action":"retry","object":"record %d","outcome":"refused","user":"vera"`, id)) {
		t.Errorf("a refused retry does not name its record:\n%s", f.audit())
	}
	resp, err := c.Get(f.srv.URL + fmt.Sprintf("%sconfirm?do=retry&id=%d", Prefix, id))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusForbidden || ct != "text/html; charset=utf-8" {
		t.Errorf("refusal page: %d, Content-Type %q", resp.StatusCode, ct)
	}
}

func TestActionWithoutCSRFTokenRefused(t *testing.T) {
	f := newFixture(t)
	id := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Dead, "REQUIRED_FIELD_MISSING")
	c := f.client()
	f.signIn(c, "otto", operatorToken)
	for _, form := range []url.Values{{}, {"csrf": {"forged"}}} {
		status, _ := f.post(c, fmt.Sprintf("%srecords/%d/retry", Prefix, id), form)
		if status != http.StatusForbidden {
			t.Errorf("retry with csrf %q: %d", form.Get("csrf"), status)
		}
	}
	// The right token from another site's page (the browser says so).
	_, page := f.get(c, Prefix)
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s%srecords/%d/retry", f.srv.URL, Prefix, id), strings.NewReader(url.Values{"csrf": {csrfOf(t, page)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin retry: %d", resp.StatusCode)
	}
	if f.state(id) != checkpoint.Dead {
		t.Fatal("a forged request retried the record")
	}
}

func TestCloseNeedsAReasonAndKeepsItSealed(t *testing.T) {
	f := newFixture(t)
	id := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Dead, "REQUIRED_FIELD_MISSING")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	if status, _ := f.post(c, fmt.Sprintf("%srecords/%d/close", Prefix, id), url.Values{"csrf": {csrf}, "reason": {"  "}}); status != http.StatusBadRequest {
		t.Errorf("close without a reason: %d", status)
	}
	status, body := f.post(c, fmt.Sprintf("%srecords/%d/close", Prefix, id), url.Values{"csrf": {csrf}, "reason": {"duplicate of MRN M901, merged by HIM"}})
	if status != 200 || !strings.Contains(body, "is closed") {
		t.Fatalf("close: %d\n%s", status, body)
	}
	r, _ := f.log.Get(id)
	if r.State != checkpoint.Skipped || !strings.Contains(r.Reason, "otto") || strings.Contains(r.Reason, "M901") {
		t.Errorf("closed record: state %s, reason %q", r.State, r.Reason)
	}
	if strings.Contains(body, "M901") {
		t.Error("the typed reason is shown without a reveal")
	}
	// An auditor's reveal shows it, as the reason it was closed.
	a := f.client()
	acsrf := f.signIn(a, "aude", auditorToken)
	if _, rev := f.post(a, fmt.Sprintf("%srecords/%d/reveal", Prefix, id), url.Values{"csrf": {acsrf}}); !strings.Contains(rev, "Why it was closed") ||
		!strings.Contains(rev, "duplicate of MRN M901") {
		t.Error("the reveal of a closed record does not show why it was closed")
	}
}

func TestAuditorRevealsWithAuditLine(t *testing.T) {
	f := newFixture(t)
	id := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Dead, "REQUIRED_FIELD_MISSING")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	if status, _ := f.post(c, fmt.Sprintf("%srecords/%d/reveal", Prefix, id), url.Values{"csrf": {csrf}}); status != http.StatusForbidden {
		t.Errorf("operator's reveal: %d", status)
	}
	a := f.client()
	csrf = f.signIn(a, "aude", auditorToken)
	status, body := f.post(a, fmt.Sprintf("%srecords/%d/reveal", Prefix, id), url.Values{"csrf": {csrf}})
	if status != 200 || !strings.Contains(body, "SECRET-MRN") || !strings.Contains(body, "DOE JANE is a duplicate") {
		t.Fatalf("auditor's reveal: %d\n%s", status, body)
	}
	if !strings.Contains(f.audit(), fmt.Sprintf(`"action":"reveal","object":"record %d","outcome":"allowed","user":"aude"`, id)) {
		t.Errorf("reveal not audited:\n%s", f.audit())
	}
	// A GET of the reveal address reveals nothing (no payload in URLs or history).
	if status, body := f.get(a, fmt.Sprintf("%srecords/%d/reveal", Prefix, id)); strings.Contains(body, "SECRET-MRN") || status == 200 {
		t.Errorf("GET reveal: %d", status)
	}
}

func TestPatientSearchNeverMixesPatients(t *testing.T) {
	f := newFixture(t)
	// Same MRN, different authorities: two patients. A longer MRN: a third.
	a := f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Done, "")
	b := f.add("C2", "CLINIC|M900", "ADT^A01", checkpoint.Done, "")
	d := f.add("C3", "HOSP|M9000", "ADT^A01", checkpoint.Done, "")
	e := f.add("C4", "HOSP|M900", "ADT^A08", checkpoint.Dead, "REQUIRED_FIELD_MISSING")
	c := f.client()
	f.signIn(c, "vera", viewerToken)
	ids := func(body string) map[uint64]bool {
		out := map[uint64]bool{}
		for _, id := range []uint64{a, b, d, e} {
			if strings.Contains(body, fmt.Sprintf(`<a href="/ui/records/%d">`, id)) {
				out[id] = true
			}
		}
		return out
	}
	_, body := f.get(c, Prefix+"messages?authority=HOSP&mrn=M900")
	if got := ids(body); len(got) != 2 || !got[a] || !got[e] {
		t.Errorf("HOSP|M900 found %v, want %d and %d", got, a, e)
	}
	_, body = f.get(c, Prefix+"messages?authority=CLINIC&mrn=M900")
	if got := ids(body); len(got) != 1 || !got[b] {
		t.Errorf("CLINIC|M900 found %v, want %d", got, b)
	}
	for _, q := range []string{"authority=&mrn=M900", "authority=HOSP&mrn=", "authority=HOSP&mrn=M90"} {
		_, body = f.get(c, Prefix+"messages?"+q)
		if got := ids(body); len(got) != 0 {
			t.Errorf("%s found %v", q, got)
		}
	}
	_, tl := f.get(c, Prefix+"patients?authority=HOSP&mrn=M900")
	if !strings.Contains(tl, "2 record(s)") || !strings.Contains(tl, "003000000000001AAA") || strings.Contains(tl, fmt.Sprintf(`records/%d"`, b)) {
		t.Errorf("timeline of HOSP|M900:\n%s", tl)
	}
	if strings.Contains(f.audit(), "M900") {
		t.Error("the audit log holds an MRN")
	}
	if n := strings.Count(f.audit(), `"action":"find patient"`); n < 2 {
		t.Errorf("patient searches audited %d times", n)
	}
}

func TestTimelineShowsWhatHoldsTheLane(t *testing.T) {
	f := newFixture(t)
	f.add("C1", "HOSP|M900", "ADT^A01", checkpoint.Done, "")
	hold := f.add("C2", "HOSP|M900", "ADT^A08", checkpoint.Retrying, "on Contact (op 1): UNABLE_TO_LOCK_ROW")
	behind := f.add("C3", "HOSP|M900", "ADT^A03", checkpoint.Received, "")
	c := f.client()
	f.signIn(c, "vera", viewerToken)
	_, tl := f.get(c, Prefix+"patients?authority=HOSP&mrn=M900")
	if !strings.Contains(tl, fmt.Sprintf(`The lane waits on <a href="/ui/records/%d">record %d</a>`, hold, hold)) || !strings.Contains(tl, "UNABLE_TO_LOCK_ROW") ||
		!strings.Contains(tl, "waiting behind it") {
		t.Errorf("timeline does not say what holds the lane:\n%s", tl)
	}
	_, rec := f.get(c, fmt.Sprintf("%srecords/%d", Prefix, behind))
	if !strings.Contains(rec, fmt.Sprintf(`The lane waits on <a href="/ui/records/%d">`, hold)) {
		t.Errorf("record %d's view does not name its lane's holder", behind)
	}
}

func TestOperatorReleasesAHeldNote(t *testing.T) {
	f := newFixture(t)
	id := f.add("N1", "note|a0x1", "note", checkpoint.Retrying, "held: the patient has no EHR identifier yet")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	_, list := f.get(c, Prefix+"messages?state=held")
	if !strings.Contains(list, fmt.Sprintf(`href="/ui/records/%d"`, id)) {
		t.Fatalf("held filter does not list the note:\n%s", list)
	}
	_, rec := f.get(c, fmt.Sprintf("%srecords/%d", Prefix, id))
	if !strings.Contains(rec, "Release the held note") {
		t.Fatal("no release offered for a held note")
	}
	status, body := f.post(c, fmt.Sprintf("%srecords/%d/release", Prefix, id), url.Values{"csrf": {csrf}})
	if status != 200 || !strings.Contains(body, "is tried again now") {
		t.Fatalf("release: %d\n%s", status, body)
	}
	r, _ := f.log.Get(id)
	if now := time.Now(); r.ReadyAt.After(now) {
		t.Errorf("released note is ready at %v, after now %v (it was due in 3 h)", r.ReadyAt, now)
	}
}

func TestRetrySelectionConfirmsThenRequeues(t *testing.T) {
	f := newFixture(t)
	a := f.add("C1", "HOSP|M1", "ADT^A01", checkpoint.Dead, "X")
	b := f.add("C2", "HOSP|M2", "ADT^A01", checkpoint.Dead, "X")
	keep := f.add("C3", "HOSP|M3", "ADT^A01", checkpoint.Dead, "X")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	form := url.Values{"csrf": {csrf}, "id": {fmt.Sprint(a), fmt.Sprint(b)}}
	status, body := f.post(c, Prefix+"confirm", form)
	if status != 200 || !strings.Contains(body, "Confirm: Retry the selected records") || f.state(a) != checkpoint.Dead {
		t.Fatalf("confirm selection: %d\n%s", status, body)
	}
	status, body = f.post(c, Prefix+"retry-selected", form)
	if status != 200 || !strings.Contains(body, "2 of 2 selected records are queued again") {
		t.Fatalf("retry selection: %d\n%s", status, body)
	}
	if f.state(a) != checkpoint.Received || f.state(b) != checkpoint.Received || f.state(keep) != checkpoint.Dead {
		t.Errorf("states after: %s %s %s", f.state(a), f.state(b), f.state(keep))
	}
}

// conflict stores a message under key, then another under the same key
// with other content: a conflict entry for the first's record.
func (f *fixture) conflict(key, lane string) (record, conflict uint64) {
	f.t.Helper()
	record = f.add(key, lane, "ADT^A08", checkpoint.Done, "")
	other := "MSH|^~\\&|ADT|HOSP|CRM|X|20250101||ADT^A08|" + key + "|P|2.5.1\rPID|1||SECRET-MRN^^^HOSP^MR||DOE^JANET\r"
	res, err := f.log.Append(context.Background(), checkpoint.Entry{Key: "ehr|ADT|HOSP|" + key, Source: "ehr", Kind: checkpoint.KindHL7v2, Type: "ADT^A08",
		Hash: sha256.Sum256([]byte(other)), Lane: lane, Payload: []byte(other), Ack: []byte("MSA|AR"), Received: f.clock()})
	if err != nil || res.Outcome != checkpoint.Conflict {
		f.t.Fatalf("conflict: %+v %v", res, err)
	}
	cs, err := f.log.Conflicts(0, 10)
	if err != nil || len(cs) == 0 {
		f.t.Fatalf("no conflict entry: %v", err)
	}
	return record, cs[len(cs)-1].ID
}

func TestOperatorResolvesConflicts(t *testing.T) {
	f := newFixture(t)
	keepRec, keep := f.conflict("K1", "HOSP|M1")
	acceptRec, accept := f.conflict("K2", "HOSP|M2")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	_, list := f.get(c, Prefix+"conflicts")
	for _, id := range []uint64{keep, accept} {
		if !strings.Contains(list, fmt.Sprintf("/ui/confirm?do=keep&amp;id=%d", id)) {
			t.Fatalf("conflict %d is not listed with its actions:\n%s", id, list)
		}
	}
	if strings.Contains(list, "DOE^JANET") {
		t.Error("the conflicts page shows a payload without a reveal")
	}
	if status, body := f.get(c, fmt.Sprintf("%sconfirm?do=accept&id=%d", Prefix, accept)); status != 200 || !strings.Contains(body, "Confirm: Accept the new message") {
		t.Fatalf("confirm accept: %d", status)
	}
	if status, body := f.post(c, fmt.Sprintf("%sconflicts/%d/resolve", Prefix, keep), url.Values{"csrf": {csrf}, "do": {"keep"}}); status != 200 ||
		!strings.Contains(body, "dismissed") {
		t.Fatalf("keep: %d\n%s", status, body)
	}
	if status, body := f.post(c, fmt.Sprintf("%sconflicts/%d/resolve", Prefix, accept), url.Values{"csrf": {csrf}, "do": {"accept"}}); status != 200 ||
		!strings.Contains(body, "replaces the stored one") {
		t.Fatalf("accept: %d\n%s", status, body)
	}
	if st := f.state(keepRec); st != checkpoint.Done {
		t.Errorf("the kept record is %s", st)
	}
	if st := f.state(acceptRec); st != checkpoint.Received {
		t.Errorf("the accepted record is %s, want received (sent again)", st)
	}
	r, err := f.log.Reveal(acceptRec)
	if err != nil || !strings.Contains(string(r.Payload), "DOE^JANET") {
		t.Errorf("the accepted record's payload is not the new message: %v", err)
	}
	if cs, _ := f.log.Conflicts(0, 10); len(cs) != 0 {
		t.Errorf("%d conflicts left", len(cs))
	}
	for _, want := range []string{fmt.Sprintf(`"action":"resolve","object":"conflict %d","outcome":"allowed","user":"otto"`, keep),
		fmt.Sprintf(`"action":"resolve","object":"conflict %d","outcome":"allowed","user":"otto"`, accept)} {
		if !strings.Contains(f.audit(), want) {
			t.Errorf("audit lacks %s", want)
		}
	}
}

func TestWorkbenchPicksAStoredMessageOnlyForAnAuditor(t *testing.T) {
	f := newFixture(t)
	set, err := mappings.Load([]string{"../../configs/mappings/healthcloud"}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	f.con.opts.Mappings = func() *mappings.Set { return set }
	msg, err := os.ReadFile("../../configs/samples/hl7v2/ADT-A01-01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	id := f.addPayload("MSG00001", "test1^2.16.1^HCD|PATID1234", "ADT^A01", string(msg), checkpoint.Done, "")
	c := f.client()
	csrf := f.signIn(c, "otto", operatorToken)
	if status, body := f.post(c, Prefix+"workbench", url.Values{"csrf": {csrf}, "record": {fmt.Sprint(id)}}); status != http.StatusForbidden ||
		strings.Contains(body, "EVERYMAN") {
		t.Errorf("an operator picked a stored message: %d", status)
	}
	a := f.client()
	csrf = f.signIn(a, "aude", auditorToken)
	status, body := f.post(a, Prefix+"workbench", url.Values{"csrf": {csrf}, "record": {fmt.Sprint(id)}})
	if status != 200 || !strings.Contains(body, "upsert Account") || !strings.Contains(body, "EVERYMAN") {
		t.Fatalf("auditor's pick: %d", status)
	}
	if !strings.Contains(f.audit(), fmt.Sprintf(`"action":"reveal","object":"record %d","outcome":"allowed","user":"aude"`, id)) {
		t.Error("the pick is not audited as a reveal")
	}
	// A viewer maps a pasted message (it changes nothing).
	v := f.client()
	csrf = f.signIn(v, "vera", viewerToken)
	if status, body := f.post(v, Prefix+"workbench", url.Values{"csrf": {csrf}, "message": {string(msg)}}); status != 200 || !strings.Contains(body, "upsert Account") {
		t.Errorf("viewer's paste: %d", status)
	}
}
