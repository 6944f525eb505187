package writeback

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// dvNotes is write-back over the sandbox's Dataverse side.
type dvNotes struct {
	sb     *sandbox.Server
	base   string
	http   *http.Client
	log    *checkpoint.Log
	src    *Source
	outbox string
}

func newDVNotes(t *testing.T, cfg Config) *dvNotes {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	cert, certPEM, err := sandbox.LoadOrCreateCert(filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sb.ListenTLS("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	base := "https://" + addr.String()
	cred, err := dynamics.NewCredential(dynamics.Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: "sandbox-secret", AuthorityHost: base, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamics.New(dynamics.Config{URL: base, Credential: cred, HTTPClient: hc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	l, err := checkpoint.Open(filepath.Join(dir, "checkpoint.db"), checkpoint.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	crm := &dynamics.NoteReader{Client: client}
	outbox := filepath.Join(dir, "outbox")
	h := &Handler{Cfg: cfg, CRM: crm, Target: &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}, Logger: quiet}
	p := pipeline.New(pipeline.Options{Log: l, Mappings: func() *mappings.Set { return &mappings.Set{} }, Sink: &dynamics.Sink{Client: client},
		Linger: -1, Poll: 10 * time.Millisecond, Logger: quiet, Notes: h})
	h.Backoff = p.Backoff
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; l.Close(); sb.Close() })
	return &dvNotes{sb: sb, base: base, http: hc, log: l, outbox: outbox,
		src: &Source{Cfg: cfg, CRM: crm, Log: l, WatermarkFile: filepath.Join(dir, "wm"), Appended: p.Notify, Logger: quiet}}
}

// user creates or edits a row as a Dynamics user would.
func (r *dvNotes) user(t *testing.T, method, path, body string) string {
	t.Helper()
	return sandboxWrite(t, r.http, r.base, method, path, body)
}

func (r *dvNotes) task(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, x := range r.sb.DataverseRecords("task") {
		if x["activityid"] == id {
			return x
		}
	}
	t.Fatalf("no task %s", id)
	return nil
}

func (r *dvNotes) poll(t *testing.T) int {
	t.Helper()
	return pollOnce(t, r.src)
}

// Write-back from Dataverse: a task regarding a contact is filed as an
// MDM^T02 with the contact's MRN, the open encounter's visit number and
// the owner's provider id, the task's status columns show Filed, an edit
// goes as a T10, and a task regarding nothing is held.
func TestDataverseWriteback(t *testing.T) {
	r := newDVNotes(t, Config{AuthorField: "new_ehrproviderid", HeldRetry: time.Hour})
	contact := r.user(t, "POST", "contacts", `{"lastname":"DOE","msemr_medicalrecordnumber":"GENHOSP|MRN77"}`)
	r.user(t, "POST", "msemr_encounters", `{"msemr_encounteridentifier":"GENHOSP|V55","msemr_encounterstatus":935000003,
		"msemr_periodstart":"2026-01-04T08:00:00Z","msemr_EncounterPatientIdentifier@odata.bind":"/contacts(`+contact+`)"}`)
	r.user(t, "POST", "msemr_encounters", `{"msemr_encounteridentifier":"GENHOSP|V56","msemr_encounterstatus":935000005,
		"msemr_periodstart":"2026-01-05T08:00:00Z","msemr_EncounterPatientIdentifier@odata.bind":"/contacts(`+contact+`)"}`)
	coordinator := r.user(t, "POST", "systemusers", `{"fullname":"Care Coordinator","new_ehrproviderid":"PRV9"}`)
	task := r.user(t, "POST", "tasks", `{"subject":"Discharge call","description":"Agrees to plan.\nFollow-up in 7 days",
		"new_sendtoehr":true,"regardingobjectid_contact@odata.bind":"/contacts(`+contact+`)","ownerid@odata.bind":"/systemusers(`+coordinator+`)"}`)
	r.user(t, "POST", "tasks", `{"subject":"Private","description":"not for the EHR","new_sendtoehr":false,
		"regardingobjectid_contact@odata.bind":"/contacts(`+contact+`)"}`)
	orphan := r.user(t, "POST", "tasks", `{"subject":"Orphan","description":"x","new_sendtoehr":true}`)
	if n := r.poll(t); n != 2 {
		t.Fatalf("poll found %d versions, want 2", n)
	}
	waitUntil(t, "filed", func() bool { return r.task(t, task)["new_ehrstatus"] == "Filed" })
	if tk := r.task(t, task); tk["new_ehrdocumentid"] != "EHRB-"+task || tk["new_ehrfiledat"] == nil {
		t.Errorf("task %v", tk)
	}
	waitUntil(t, "held", func() bool { return r.task(t, orphan)["new_ehrstatus"] == "Held" })
	if e, _ := r.task(t, orphan)["new_ehrerror"].(string); !strings.Contains(e, "not linked to a patient") {
		t.Errorf("held reason %q", e)
	}
	files, _ := filepath.Glob(filepath.Join(r.outbox, "*.hl7"))
	if len(files) != 1 {
		t.Fatalf("outbox %v", files)
	}
	data, _ := os.ReadFile(files[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"MSH-9.2": "T02", "PID-3.1": "MRN77", "PID-3.4": "GENHOSP", "PV1-19.1": "V55",
		"TXA-9.1": "PRV9", "TXA-12.1": "EHRB-" + task, "OBX[1]-5": "Discharge call", "OBX[3]-5": "Follow-up in 7 days"} {
		if got, _ := m.GetString(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if n := r.poll(t); n != 0 {
		t.Errorf("the status written back was taken for %d new versions", n)
	}
	r.user(t, "PATCH", "tasks/"+task, `{"description":"Follow-up in 10 days"}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("after an edit, poll found %d versions", n)
	}
	waitUntil(t, "the replacement", func() bool {
		files, _ := filepath.Glob(filepath.Join(r.outbox, "*.hl7"))
		return len(files) == 2
	})
	files, _ = filepath.Glob(filepath.Join(r.outbox, "*.hl7"))
	t10 := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if m, _ := hl7.Parse(b); m != nil && m.Header().Trigger == "T10" {
			t10++
			if v, _ := m.GetString("TXA-13.1"); v != "EHRB-"+task {
				t.Errorf("replacement of %q", v)
			}
		}
	}
	if t10 != 1 {
		t.Errorf("%d T10 messages", t10)
	}
}

// Dataverse keys written through keysafe() (a '/' in the MRN, a URI
// universal id in the authority, a ':' in the visit number) are unescaped
// before they go to the EHR: the MDM carries the identifiers as the EHR
// sent them.
func TestDataverseWritebackEscapedKeys(t *testing.T) {
	r := newDVNotes(t, Config{HeldRetry: time.Hour})
	contact := r.user(t, "POST", "contacts", `{"lastname":"DOE","msemr_medicalrecordnumber":"HOSP^http~3A~2F~2Fh.example^URI|A~2F1~7E2"}`)
	r.user(t, "POST", "msemr_encounters", `{"msemr_encounteridentifier":"HOSP|V~3A5","msemr_encounterstatus":935000003,
		"msemr_periodstart":"2026-01-04T08:00:00Z","msemr_EncounterPatientIdentifier@odata.bind":"/contacts(`+contact+`)"}`)
	task := r.user(t, "POST", "tasks", `{"subject":"Call","description":"x","new_sendtoehr":true,
		"regardingobjectid_contact@odata.bind":"/contacts(`+contact+`)"}`)
	m := fileOneNote(t, r, task)
	for p, want := range map[string]string{"PID-3.1": "A/1~2", "PID-3.4.1": "HOSP", "PID-3.4.2": "http://h.example", "PID-3.4.3": "URI", "PV1-19.1": "V:5"} {
		if got, _ := m.GetString(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}

// A value holding the key's own separators is kept apart by hl7.KeyEscape
// in the key (the MRN "A/1|2" under the authority "HO^SP" keys as
// HO\S\SP^...|A/1\F\2, then keysafe()'d), and write-back gives the EHR
// each part as it was sent: the "|" and "^" are characters of the MRN and
// of the namespace again, not separators.
func TestDataverseWritebackKeyEscapedParts(t *testing.T) {
	r := newDVNotes(t, Config{HeldRetry: time.Hour})
	key := mappings.KeySafe(hl7.KeyEscape("HO^SP") + "^1.2.3^ISO|" + hl7.KeyEscape("A/1|2"))
	contact := r.user(t, "POST", "contacts", `{"lastname":"DOE","msemr_medicalrecordnumber":"`+key+`"}`)
	task := r.user(t, "POST", "tasks", `{"subject":"Call","description":"x","new_sendtoehr":true,
		"regardingobjectid_contact@odata.bind":"/contacts(`+contact+`)"}`)
	m := fileOneNote(t, r, task)
	for p, want := range map[string]string{"PID-3.1": "A/1|2", "PID-3.4.1": "HO^SP", "PID-3.4.2": "1.2.3", "PID-3.4.3": "ISO"} {
		if got, _ := m.GetString(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}

// fileOneNote polls the one note version there is, waits until task is
// Filed and returns the MDM it left in the outbox.
func fileOneNote(t *testing.T, r *dvNotes, task string) *hl7.Message {
	t.Helper()
	if n := r.poll(t); n != 1 {
		t.Fatalf("poll found %d versions, want 1", n)
	}
	waitUntil(t, "filed", func() bool { return r.task(t, task)["new_ehrstatus"] == "Filed" })
	files, _ := filepath.Glob(filepath.Join(r.outbox, "*.hl7"))
	if len(files) != 1 {
		t.Fatalf("outbox %v", files)
	}
	data, _ := os.ReadFile(files[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
