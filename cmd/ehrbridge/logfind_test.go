package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// seedPatients writes a stopped daemon's log: 1 HOSP|MRNZQ (dead), 2
// OTHER|MRNZQ, 3 HOSP|MRNZQX, 4 MRNZQ^HOSP (connectors/ehr.LaneKey's form), 5
// HOSP|MRNZQ (received, behind 1's lane), and a conflict on record 2.
func seedPatients(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i, lane := range []string{"HOSP|MRNZQ", "OTHER|MRNZQ", "HOSP|MRNZQX", "MRNZQ^HOSP", "HOSP|MRNZQ", "OTHER|MRNZQ"} {
		p := "MSH|^~\\&|EPIC|HOSP\rPID|1||ZZPATIENT" + lane + string(rune('1'+i))
		key := "mllp|EPIC|HOSP|C" + string(rune('1'+i))
		if i == 5 {
			key = "mllp|EPIC|HOSP|C2"
		}
		e := checkpoint.Entry{Key: key, Source: "mllp", Kind: checkpoint.KindHL7v2, Type: "ADT^A0" + string(rune('1'+i%3)),
			Lane: lane, Payload: []byte(p), Ack: []byte("MSA|AA|" + key), Hash: sha256.Sum256([]byte(p))}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := l.Claim(1)
	if err := l.Settle([]checkpoint.Settlement{{ID: rs[0].ID, State: checkpoint.Dead, Reason: "crm permanent error INVALID_FIELD on Contact",
		Code: "INVALID_FIELD", Op: 1, Object: "Contact", Action: "upsert by MRN__c"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func findIDs(t *testing.T, out string) []uint64 {
	t.Helper()
	var v logadmin.FindView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("find --json: %v\n%s", err, out)
	}
	ids := []uint64{}
	for _, r := range v.Records {
		ids = append(ids, r.ID)
	}
	return ids
}

// log find and log trace answer the same with the daemon stopped (the
// file) and running (its admin API), and as the API does for the console.
func TestLogFindAndTraceParity(t *testing.T) {
	dir := seedPatients(t)
	type answer struct{ find, findText, trace string }
	ask := func() answer {
		var a answer
		out, e, code := runCLI(t, "log", "find", "--mrn", "HOSP|MRNZQ", "--json", "--data-dir", dir)
		if code != 0 {
			t.Fatalf("find: %d %s", code, e)
		}
		a.find = out
		a.findText, _, _ = runCLI(t, "log", "find", "--mrn", "HOSP|MRNZQ", "--state", "dead,received", "--data-dir", dir)
		out, e, code = runCLI(t, "log", "trace", "1", "--json", "--data-dir", dir)
		if code != 0 {
			t.Fatalf("trace: %d %s", code, e)
		}
		a.trace = out
		return a
	}
	stopped := ask()
	if got := findIDs(t, stopped.find); !slices.Equal(got, []uint64{5, 4, 1}) {
		t.Errorf("find --mrn HOSP|MRNZQ: %v", got)
	}
	if !strings.Contains(stopped.findText, "INVALID_FIELD") || strings.Contains(stopped.findText, "ZZPATIENT") {
		t.Errorf("find text:\n%s", stopped.findText)
	}
	for _, c := range []struct {
		args []string
		want []uint64
	}{
		{[]string{"--mrn", "OTHER|MRNZQ"}, []uint64{2}},
		{[]string{"--mrn", "HOSP|MRNZQX"}, []uint64{3}},
		{[]string{"--mrn", "HOSP|MRNZ"}, []uint64{}},
		{[]string{"--control-id", "C3"}, []uint64{3}},
		{[]string{"--type", "ADT^A02"}, []uint64{5, 2}},
		{[]string{"--state", "dead"}, []uint64{1}},
	} {
		out, e, code := runCLI(t, append([]string{"log", "find", "--json", "--data-dir", dir}, c.args...)...)
		if code != 0 {
			t.Fatalf("find %v: %d %s", c.args, code, e)
		}
		if got := findIDs(t, out); !slices.Equal(got, c.want) {
			t.Errorf("find %v: %v, want %v", c.args, got, c.want)
		}
	}
	if _, e, code := runCLI(t, "log", "find", "--mrn", "MRNZQ", "--data-dir", dir); code != exitUsage || !strings.Contains(e, "AUTHORITY|MRN") {
		t.Errorf("find --mrn without authority: %d %s", code, e)
	}
	out, _, _ := runCLI(t, "log", "trace", "1", "--data-dir", dir)
	for _, want := range []string{"settled → dead: crm permanent error INVALID_FIELD on Contact", "the patient's records, in lane order:",
		"*1", "holds the lane"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}

	// The daemon running: the log is held, the CLI asks its admin API.
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := logadmin.NewAccount("op1", "operator", "op-token-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	access := &logadmin.Access{Audit: logadmin.NewAudit(dir), Accounts: []logadmin.Account{acc}}
	access.Audit.System = nil
	srv := httptest.NewServer(logadmin.API(l, access))
	t.Setenv(adminURLEnv, srv.URL)
	t.Setenv(adminAccountEnv, "op1")
	t.Setenv(adminTokenEnv, "op-token-0123456789")
	running := ask()
	if running != stopped {
		t.Errorf("answers differ with the daemon running:\nstopped %+v\nrunning %+v", stopped, running)
	}

	// Actions over the API name the account in the history.
	if out, e, code := runCLI(t, "log", "close", "1", "--reason", "merged by hand", "--data-dir", dir); code != 0 {
		t.Fatalf("close: %d %s %s", code, out, e)
	}
	if _, e, code := runCLI(t, "log", "close", "1", "--data-dir", dir); code != exitUsage || !strings.Contains(e, "--reason") {
		t.Errorf("close without --reason: %d %s", code, e)
	}
	if out, e, code := runCLI(t, "log", "resolve", "1", "--accept", "--data-dir", dir); code != 0 || !strings.Contains(out, "record 2 now holds") {
		t.Errorf("resolve --accept: %d %s %s", code, out, e)
	}
	if _, e, code := runCLI(t, "log", "resolve", "1", "--data-dir", dir); code != exitUsage {
		t.Errorf("resolve without --keep or --accept: %d %s", code, e)
	}
	if out, e, code := runCLI(t, "log", "retry", "1", "3", "--data-dir", dir); code != 0 || !strings.HasPrefix(out, "requeued 1 of 2 record(s) (1)") {
		t.Errorf("retry a selection: %d %q %s", code, out, e)
	}
	out, _, _ = runCLI(t, "log", "trace", "1", "--data-dir", dir)
	if !strings.Contains(out, "closed → skipped by op1") || !strings.Contains(out, "requeued → received by op1") {
		t.Errorf("trace after actions:\n%s", out)
	}
	srv.Close()
	l.Close()

	// Stopped again: actions on the file name the OS user; release needs
	// a retrying record.
	t.Setenv(adminURLEnv, "")
	if _, e, code := runCLI(t, "log", "release", "1", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "not waiting") {
		t.Errorf("release on the file: %d %s", code, e)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, logadmin.AuditFileName))
	for _, want := range []string{`"action":"find","object":"records of a patient"`, `"action":"close"`, `"action":"resolve"`,
		`"action":"trace","object":"record 1"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if strings.Contains(string(audit), "MRNZ") || strings.Contains(string(audit), "merged by hand") {
		t.Errorf("the audit log holds the MRN or the close reason:\n%s", audit)
	}
}
