package logadmin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
)

// fixture is a log with a received record (1), a dead one (2) and a
// conflict, served through the API with a token.
func fixture(t *testing.T) (*checkpoint.Log, string, *httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, e := range []checkpoint.Entry{
		{Key: "src|A|F|1", Source: "src", Type: "ADT^A01", Lane: "MRN1^H", Payload: []byte("PID|1||ZZSECRETNAME"), Ack: []byte("MSA|AA|1")},
		{Key: "src|A|F|2", Source: "src", Type: "ADT^A08", Lane: "MRN2^H", Payload: []byte("two"), Ack: []byte("MSA|AA|2")},
		{Key: "src|A|F|1", Source: "src", Type: "ADT^A01", Lane: "MRN1^H", Payload: []byte("PID|1||ZZCHANGED"), Ack: []byte("x")},
	} {
		e.Hash = sha256.Sum256(e.Payload)
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := l.Claim(10)
	for _, r := range rs {
		if r.ID == 2 {
			if err := l.MarkDead(2, "REQUIRED_FIELD_MISSING"); err != nil {
				t.Fatal(err)
			}
		} else if err := l.MarkRetry(r.ID, r.Received, "timeout"); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(API(l, testAccess(dir)))
	t.Cleanup(srv.Close)
	return l, dir, srv, testSecret
}

// testSecret is every test account's token; the account name says its
// role ("all" holds every permission).
const testSecret = "test-token-0123456789"

func testAccess(dir string) *Access {
	a := &Access{Audit: NewAudit(dir)}
	a.Audit.System = nil // the host's journal stays out of tests
	for _, role := range []string{"viewer", "operator", "auditor"} {
		acc, err := NewAccount(role, role, testSecret)
		if err != nil {
			panic(err)
		}
		a.Accounts = append(a.Accounts, acc)
	}
	a.Accounts = append(a.Accounts, Account{Name: "all", Perm: PermAll, sum: sha256.Sum256([]byte(testSecret))})
	return a
}

func as(srv *httptest.Server, account string) *Client {
	return &Client{BaseURL: srv.URL, Account: account, Secret: testSecret}
}

// auditLines reads the audit log's lines as events.
func auditLines(t *testing.T, dir string) []Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// No shared token: a call without an account, with a bearer token (the
// shared admin.token of old) or a wrong one is refused 401 with a Basic
// challenge, and each refusal is audited.
func TestAPIRequiresAccount(t *testing.T) {
	_, dir, srv, _ := fixture(t)
	basic := func(name, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+secret))
	}
	auths := []string{"", "Bearer " + testSecret, basic("auditor", "wrong"), basic("nobody", testSecret), "Basic x"}
	for _, auth := range auths {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/log/stats", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("auth %q: status %d, want 401 with a Basic challenge", auth, resp.StatusCode)
		}
	}
	c := &Client{BaseURL: srv.URL, Account: "auditor", Secret: "wrong"}
	if _, err := c.Stats(); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "wrong account name or token") {
		t.Errorf("client with a wrong token: %v", err)
	}
	evs := auditLines(t, dir)
	if len(evs) != len(auths)+1 {
		t.Fatalf("%d audit lines for %d refused calls: %+v", len(evs), len(auths)+1, evs)
	}
	for _, ev := range evs {
		if ev.Outcome != "refused" || ev.Action != "stats" || ev.User != "anonymous" || ev.Remote == "" || ev.Time == "" {
			t.Errorf("audit line of a refusal: %+v", ev)
		}
	}
}

// Each role does what it may and no more; every call, allowed or refused,
// is an audit line naming the account, the action and the record.
func TestRolesEnforced(t *testing.T) {
	_, dir, srv, _ := fixture(t)
	viewer, operator, auditor := as(srv, "viewer"), as(srv, "operator"), as(srv, "auditor")
	forbidden := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "has no role for") {
			t.Errorf("%s: %v, want a refusal", what, err)
		}
	}
	for name, c := range map[string]*Client{"viewer": viewer, "operator": operator, "auditor": auditor} {
		if _, err := c.Stats(); err != nil {
			t.Errorf("%s stats: %v", name, err)
		}
		if r, err := c.Show(1, false); err != nil || r.Payload != "" {
			t.Errorf("%s show: %+v %v", name, r, err)
		}
	}
	_, err := viewer.Show(1, true)
	forbidden("viewer reveal", err)
	_, err = operator.ShowConflict(1, true)
	forbidden("operator reveal conflict", err)
	forbidden("viewer retry", viewer.Retry(2))
	forbidden("auditor retry", auditor.Retry(2))
	_, err = viewer.Backup(io.Discard)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("viewer backup: %v", err)
	}
	if err := operator.Retry(2); err != nil {
		t.Errorf("operator retry: %v", err)
	}
	if r, err := auditor.Show(1, true); err != nil || r.Payload != "PID|1||ZZSECRETNAME" {
		t.Errorf("auditor reveal: %+v %v", r, err)
	}
	if n, err := auditor.Backup(io.Discard); err != nil || n == 0 {
		t.Errorf("auditor backup: %d %v", n, err)
	}
	type key struct{ user, action, object, outcome string }
	got := map[key]int{}
	for _, ev := range auditLines(t, dir) {
		got[key{ev.User, ev.Action, ev.Object, ev.Outcome}]++
	}
	for _, want := range []key{
		{"viewer", "reveal", "record 1", "refused"}, {"operator", "reveal", "conflict 1", "refused"},
		{"viewer", "retry", "record 2", "refused"}, {"auditor", "retry", "record 2", "refused"},
		{"viewer", "backup", "checkpoint log", "refused"}, {"operator", "retry", "record 2", "allowed"},
		{"auditor", "reveal", "record 1", "allowed"}, {"auditor", "backup", "checkpoint log", "allowed"},
		{"viewer", "stats", "", "allowed"}, {"operator", "show", "record 1", "allowed"},
	} {
		if got[want] != 1 {
			t.Errorf("audit lines %+v: %d, want 1 (all: %v)", want, got[want], got)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, AuditFileName)); strings.Contains(string(b), "ZZSECRETNAME") || strings.Contains(string(b), testSecret) {
		t.Error("the audit log holds a payload or a token")
	}
}

// A local caller is known by the OS identity the daemon put in the
// connection's context: root and trusted uids hold every role, others
// what admin.roles gives their user or groups; accounts win over the
// peer (a reverse proxy on loopback forwards a person's credentials).
func TestPeerIdentity(t *testing.T) {
	a := &Access{Trusted: map[uint32]bool{0: true}, Users: map[string]Perm{"alice": PermView | PermReveal},
		Groups: map[string]Perm{"ops": PermView | PermOperate},
		lookupUser: func(uid string) (string, []string, error) {
			switch uid {
			case "0":
				return "root", nil, nil
			case "1001":
				return "alice", []string{"alice"}, nil
			case "1002":
				return "bob", []string{"bob", "ops"}, nil
			}
			return "", nil, errors.New("unknown uid")
		}}
	for _, tc := range []struct {
		uid  uint32
		name string
		perm Perm
	}{{0, "root", PermAll}, {1001, "alice", PermView | PermReveal}, {1002, "bob", PermView | PermOperate}, {4242, "uid 4242", 0}} {
		req := httptest.NewRequest("GET", "/api/v1/log/stats", nil)
		req = req.WithContext(WithPeer(req.Context(), Peer{UID: tc.uid, Via: "socket"}))
		c := a.Authenticate(req)
		if c.Name != tc.name || c.Perm != tc.perm || c.Via != "socket" || c.UID != strconv.FormatUint(uint64(tc.uid), 10) {
			t.Errorf("uid %d: %+v, want %s with %s", tc.uid, c, tc.name, tc.perm)
		}
	}
	// A proxy's request over loopback is not the proxy's user's: without
	// an account it is anonymous, whoever runs the proxy.
	req := httptest.NewRequest("GET", "/status", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req = req.WithContext(WithPeer(req.Context(), Peer{UID: 0, Via: "loopback"}))
	if c := a.Authenticate(req); c.Name != "anonymous" || c.Perm != 0 {
		t.Errorf("a proxied request from root's loopback: %+v", c)
	}
	acc, _ := NewAccount("carol", "viewer", testSecret)
	a.Accounts = []Account{acc}
	req = httptest.NewRequest("GET", "/status", nil)
	req.SetBasicAuth("carol", testSecret)
	req = req.WithContext(WithPeer(req.Context(), Peer{UID: 0, Via: "loopback"}))
	if c := a.Authenticate(req); c.Name != "carol" || c.Perm != PermView || c.Via != "account" {
		t.Errorf("account over a trusted loopback peer: %+v", c)
	}
}

// The Client over HTTP and Local on the log give the same answers.
func TestClientAndLocalAgree(t *testing.T) {
	l, dir, srv, _ := fixture(t)
	services := map[string]Service{
		"local":  &Local{Log: l, Audit: NewAudit(dir), Via: "cli"},
		"client": as(srv, "all"),
	}
	for name, svc := range services {
		t.Run(name, func(t *testing.T) {
			st, err := svc.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.States["retrying"] != 1 || st.States["dead"] != 1 || st.Conflicts != 1 || st.OldestPending == nil {
				t.Errorf("stats = %+v", st)
			}
			dead, _, err := svc.List("dead", 0, 10)
			if err != nil || len(dead) != 1 || dead[0].ID != 2 || dead[0].Reason != "REQUIRED_FIELD_MISSING" {
				t.Errorf("list dead = %+v, %v", dead, err)
			}
			all, _, _ := svc.List("all", 0, 10)
			if len(all) != 2 {
				t.Errorf("list all = %d records", len(all))
			}
			_, confs, err := svc.List("conflict", 0, 10)
			if err != nil || len(confs) != 1 || confs[0].RecordID != 1 {
				t.Errorf("list conflict = %+v, %v", confs, err)
			}
			if _, _, err := svc.List("bogus", 0, 10); err == nil {
				t.Error("an unknown state must be an error")
			}
			r, err := svc.Show(1, false)
			if err != nil || r.Payload != "" || r.PayloadBytes != len("PID|1||ZZSECRETNAME") || r.Ack != "MSA|AA|1" {
				t.Errorf("show = %+v, %v", r, err)
			}
			if _, err := svc.Show(99, false); !errors.Is(err, checkpoint.ErrNotFound) {
				t.Errorf("show 99: %v, want ErrNotFound", err)
			}
			if err := svc.Retry(1); !errors.Is(err, checkpoint.ErrTransition) {
				t.Errorf("retry of a retrying record: %v, want ErrTransition", err)
			}
		})
	}
}

// A reveal writes its audit line first; the audit line names the record
// and the channel, never the payload.
func TestRevealIsAudited(t *testing.T) {
	_, dir, srv, _ := fixture(t)
	c := as(srv, "auditor")
	r, err := c.Show(1, true)
	if err != nil || r.Payload != "PID|1||ZZSECRETNAME" {
		t.Fatalf("reveal = %+v, %v", r, err)
	}
	cv, err := c.ShowConflict(1, true)
	if err != nil || cv.Payload != "PID|1||ZZCHANGED" {
		t.Fatalf("reveal conflict = %+v, %v", cv, err)
	}
	if cv, _ := c.ShowConflict(1, false); cv.Payload != "" {
		t.Error("conflict payload shown without --reveal")
	}
	evs := auditLines(t, dir)
	if len(evs) != 3 || evs[0].Action != "reveal" || evs[0].Object != "record 1" || evs[0].Via != "account" || evs[0].User != "auditor" ||
		evs[1].Action != "reveal" || evs[1].Object != "conflict 1" || evs[2].Action != "show" || evs[2].Object != "conflict 1" {
		t.Errorf("audit log: %+v", evs)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, AuditFileName))
	if strings.Contains(string(audit), "ZZSECRETNAME") || strings.Contains(string(audit), "ZZCHANGED") {
		t.Error("the audit log holds payload text")
	}
	// Without an audit log there is no reveal.
	l2 := &Local{Log: nil}
	if _, err := l2.Show(1, true); err == nil {
		t.Error("reveal without an audit log must be refused")
	}
}

func TestRetryDead(t *testing.T) {
	l, _, srv, _ := fixture(t)
	c := as(srv, "operator")
	n, err := c.RetryAllDead()
	if err != nil || n != 1 {
		t.Fatalf("retry-dead = %d, %v", n, err)
	}
	if r, _ := l.Get(2); r.State != checkpoint.Received {
		t.Errorf("record 2 is %s after retry", r.State)
	}
	if err := c.Retry(2); !errors.Is(err, checkpoint.ErrTransition) {
		t.Errorf("retry of a live record: %v", err)
	}
}

// skippedFixture is a log with two skipped records (VXU^V04, ADT^A60), one
// done with warnings and one plain done record, served through the API.
func skippedFixture(t *testing.T) (*checkpoint.Log, map[string]Service) {
	t.Helper()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for i, typ := range []string{"VXU^V04", "ADT^A60", "ADT^A08", "ADT^A01"} {
		e := checkpoint.Entry{Key: "src|A|F|" + typ, Source: "src", Type: typ, Lane: "MRN" + typ, Payload: []byte(typ), Ack: []byte{'a', byte('0' + i)}}
		e.Hash = sha256.Sum256(e.Payload)
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if rs, _ := l.Claim(10); len(rs) != 4 {
		t.Fatalf("claimed %d", len(rs))
	}
	if err := l.Settle([]checkpoint.Settlement{
		{ID: 1, State: checkpoint.Skipped, Reason: "no mapping for VXU^V04"},
		{ID: 2, State: checkpoint.Skipped, Reason: "no mapping for ADT^A60"},
		{ID: 3, State: checkpoint.Done, Warnings: []string{"adt/visit.AdmitDate__c: not a valid timestamp"}},
		{ID: 4, State: checkpoint.Done},
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(API(l, testAccess(dir)))
	t.Cleanup(srv.Close)
	return l, map[string]Service{"local": &Local{Log: l, Audit: NewAudit(dir), Via: "cli"}, "client": as(srv, "all")}
}

// Skipped records and records done with warnings are counted, listed and
// shown apart, and skipped ones can be put back by type, locally and
// through the daemon alike.
func TestSkippedAndWarned(t *testing.T) {
	for _, name := range []string{"local", "client"} {
		t.Run(name, func(t *testing.T) {
			l, services := skippedFixture(t)
			svc := services[name]
			st, err := svc.Stats()
			if err != nil || st.States["skipped"] != 2 || st.States["done"] != 2 {
				t.Fatalf("stats = %+v, %v", st, err)
			}
			sk, _, err := svc.List("skipped", 0, 10)
			if err != nil || len(sk) != 2 || sk[0].Reason != "no mapping for VXU^V04" || sk[0].State != "skipped" || sk[0].DoneAt == nil {
				t.Errorf("list skipped = %+v, %v", sk, err)
			}
			w, _, err := svc.List("warned", 0, 10)
			if err != nil || len(w) != 1 || w[0].ID != 3 || !w[0].Warned || !strings.HasPrefix(w[0].Reason, "mapped with warnings: ") {
				t.Errorf("list warned = %+v, %v", w, err)
			}
			if r, err := svc.Show(4, false); err != nil || r.Warned || r.Reason != "" {
				t.Errorf("show plain done = %+v, %v", r, err)
			}
			n, gone, err := svc.RetrySkipped("ADT^A60")
			if err != nil || n != 1 || gone != 0 {
				t.Errorf("retry skipped ADT^A60 = %d, %d, %v", n, gone, err)
			}
			if r, _ := l.Get(2); r.State != checkpoint.Received {
				t.Errorf("record 2 is %s after retry", r.State)
			}
			if h, err := l.History(2); err != nil || len(h) == 0 || h[len(h)-1].Kind != checkpoint.EventRequeued || h[len(h)-1].Actor == "" ||
				h[len(h)-1].Actor == "unknown" {
				t.Errorf("record 2's history does not name who retried it: %+v %v", h, err)
			}
			if r, _ := l.Get(1); r.State != checkpoint.Skipped {
				t.Errorf("record 1 (another type) is %s", r.State)
			}
			if err := svc.Retry(1); err != nil {
				t.Errorf("retry of a skipped record by id: %v", err)
			}
			if err := svc.Retry(3); !errors.Is(err, checkpoint.ErrTransition) {
				t.Errorf("retry of a done record: %v", err)
			}
			if n, _, err := svc.RetrySkipped(""); err != nil || n != 0 {
				t.Errorf("nothing left to retry: %d, %v", n, err)
			}
		})
	}
}

// An enhanced-mode record stores its answers as MLLP frames back to back
// (CA then AA), or none at all: the view shows them without the framing
// bytes, a blank line between two; a single answer byte for byte as it
// was sent (the crash test compares it with what the sender got).
func TestViewOfEnhancedModeAcks(t *testing.T) {
	two := ehr.EncodeAcks([][]byte{[]byte("MSH|^~\\&|A\rMSA|CA|1\r"), []byte("MSH|^~\\&|A\rMSA|AA|1\r")})
	for _, tc := range []struct {
		stored []byte
		want   string
	}{
		{two, "MSH|^~\\&|A\rMSA|CA|1\r\rMSH|^~\\&|A\rMSA|AA|1\r"},
		{ehr.EncodeAcks(nil), ""},
		{[]byte("MSH|^~\\&|A\rMSA|AA|1\r"), "MSH|^~\\&|A\rMSA|AA|1\r"}, // byte for byte
	} {
		if got := ViewOf(&checkpoint.Record{Ack: tc.stored}).Ack; got != tc.want {
			t.Errorf("stored %q: view %q, want %q", tc.stored, got, tc.want)
		}
	}
}
