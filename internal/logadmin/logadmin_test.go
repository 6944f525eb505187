package logadmin

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	token, err := EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := EnsureToken(dir); again != token {
		t.Error("the token must stay the same across restarts")
	}
	if fi, _ := os.Stat(filepath.Join(dir, TokenFileName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode().Perm())
	}
	srv := httptest.NewServer(Handler(l, NewAudit(dir), token))
	t.Cleanup(srv.Close)
	return l, dir, srv, token
}

func TestAPIRequiresToken(t *testing.T) {
	_, _, srv, _ := fixture(t)
	for _, auth := range []string{"", "Bearer wrong", "Basic x"} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/log/stats", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("auth %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	c := &Client{BaseURL: srv.URL, Token: "wrong"}
	if _, err := c.Stats(); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Errorf("client with a wrong token: %v", err)
	}
}

// The Client over HTTP and Local on the log give the same answers.
func TestClientAndLocalAgree(t *testing.T) {
	l, dir, srv, token := fixture(t)
	services := map[string]Service{
		"local":  &Local{Log: l, Audit: NewAudit(dir), Via: "cli"},
		"client": &Client{BaseURL: srv.URL, Token: token},
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
	_, dir, srv, token := fixture(t)
	c := &Client{BaseURL: srv.URL, Token: token}
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
	audit, err := os.ReadFile(filepath.Join(dir, AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(audit)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"object":"record 1"`) || !strings.Contains(lines[0], `"via":"api"`) ||
		!strings.Contains(lines[1], `"object":"conflict 1"`) {
		t.Errorf("audit log:\n%s", audit)
	}
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
	l, _, srv, token := fixture(t)
	c := &Client{BaseURL: srv.URL, Token: token}
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
	token, err := EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(l, NewAudit(dir), token))
	t.Cleanup(srv.Close)
	return l, map[string]Service{"local": &Local{Log: l, Audit: NewAudit(dir), Via: "cli"}, "client": &Client{BaseURL: srv.URL, Token: token}}
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
