package checkpoint

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

const (
	orgA = "salesforce https://hospital.my.salesforce.com as integration@hospital.example"
	orgB = "salesforce https://hospital--uat.sandbox.my.salesforce.com as integration@hospital.example.uat"
)

// openFor opens the log at path for a CRM, its log lines in logs.
func openFor(t *testing.T, path, crm string, accept bool, logs *syncbuf.Buffer) (*Log, error) {
	t.Helper()
	return Open(path, Options{CRM: crm, AcceptCRMChange: accept, Logger: slog.New(slog.NewTextHandler(logs, nil))})
}

// seedFor makes a log queued for crm with pending records (received) and
// done ones, and closes it.
func seedFor(t *testing.T, path, crm string, pending, done int) {
	t.Helper()
	l, err := openFor(t, path, crm, false, &syncbuf.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range done + pending {
		mustAppend(t, l, entry("k"+string(rune('a'+i)), "lane"+string(rune('a'+i)), "payload"))
	}
	recs, err := l.Claim(done)
	if err != nil || len(recs) != done {
		t.Fatalf("claim: %d, %v", len(recs), err)
	}
	for _, r := range recs {
		if err := l.MarkDone(r.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A log whose records are pending for one CRM refuses a writable open for
// another, naming both and the way out, and keeps the CRM it had.
func TestCRMChangeRefusedWhilePending(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seedFor(t, path, orgA, 3, 2)
	logs := &syncbuf.Buffer{}
	_, err := openFor(t, path, orgB, false, logs)
	var ce *CRMChangeError
	if !errors.Is(err, ErrCRMChanged) || !errors.As(err, &ce) {
		t.Fatalf("open for another CRM with 3 pending: %v, want a CRMChangeError", err)
	}
	if ce.Stored != orgA || ce.Configured != orgB || ce.Pending != 3 {
		t.Errorf("error = %+v", ce)
	}
	for _, want := range []string{orgA, orgB, "--accept-crm-change", "3 records"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Refused before anything was written: the log still names A, and
	// opens for A.
	l, err := openFor(t, path, orgA, false, logs)
	if err != nil {
		t.Fatalf("open for the CRM it names: %v", err)
	}
	defer l.Close()
	if id, err := l.CRMIdentity(); err != nil || id != orgA {
		t.Errorf("CRMIdentity = %q, %v; want %q", id, err, orgA)
	}
	if strings.Contains(logs.String(), "CRM changed") {
		t.Errorf("a refused change was logged as made:\n%s", logs)
	}
}

// With AcceptCRMChange the log opens for the new CRM, records it and
// warns, naming both CRMs and the pending count; the next open for it
// needs no flag.
func TestCRMChangeAccepted(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seedFor(t, path, orgA, 2, 0)
	logs := &syncbuf.Buffer{}
	l, err := openFor(t, path, orgB, true, logs)
	if err != nil {
		t.Fatalf("open with AcceptCRMChange: %v", err)
	}
	if id, _ := l.CRMIdentity(); id != orgB {
		t.Errorf("CRMIdentity = %q, want %q", id, orgB)
	}
	st, _ := l.Stats()
	if st.States[Received] != 2 {
		t.Errorf("pending records after the change: %v, want both kept", st.States)
	}
	l.Close()
	out := logs.String()
	for _, want := range []string{"level=WARN", "CRM changed", orgA, orgB, "pending=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	l, err = openFor(t, path, orgB, false, &syncbuf.Buffer{})
	if err != nil {
		t.Fatalf("reopen for the accepted CRM: %v", err)
	}
	l.Close()
}

// With nothing pending (every record done) the new CRM is recorded
// silently; a log with no CRM yet (a new one, or written before the CRM
// was recorded) takes the first; the log commands (no CRM) change nothing.
func TestCRMChangeWithNothingPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seedFor(t, path, orgA, 0, 3)
	logs := &syncbuf.Buffer{}
	l, err := openFor(t, path, orgB, false, logs)
	if err != nil {
		t.Fatalf("open for another CRM with nothing pending: %v", err)
	}
	if id, _ := l.CRMIdentity(); id != orgB {
		t.Errorf("CRMIdentity = %q, want %q", id, orgB)
	}
	l.Close()
	if strings.Contains(logs.String(), "CRM") {
		t.Errorf("a change with nothing pending was logged:\n%s", logs)
	}

	fresh := filepath.Join(t.TempDir(), FileName)
	seedFor(t, fresh, "", 2, 0)
	l, err = openFor(t, fresh, orgA, false, logs)
	if err != nil {
		t.Fatalf("first CRM on a log with pending records and none recorded: %v", err)
	}
	l.Close()
	l, err = openFor(t, fresh, "", false, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if id, _ := l.CRMIdentity(); id != orgA {
		t.Errorf("an open without a CRM changed it to %q", id)
	}
}
