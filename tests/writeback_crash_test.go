package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

const wbPatients = 30

// The size of a run: 300 notes and at least 10 kills in `make test`; its
// share of `make chaos KILLS=N`, with 3 notes per kill.
var (
	wbMinKills = chaosKills(10)
	wbNotes    = max(300, 3*wbMinKills)
)

// wbCRM is the CRM side of the write-back crash test: how to run the
// sandbox, the config's crm section, and the names of patients and notes.
type wbCRM struct {
	name        string
	sandboxArgs func(addr, tlsAddr, dir string) []string
	crmConfig   func(addr, tlsAddr, dir string) string
	// patient and patientBody (with %d the patient number, twice) make a
	// patient; note and noteBody (note number twice, then the patient's
	// id) a note; idField, statusField and docField read a note, and
	// textField is the note's text a coordinator edits.
	patient, patientBody, note, noteBody, idField, statusField, docField, textField string
}

// TestWritebackCrash files 300 notes over MLLP into a faulty EHR (it
// files a message and hangs up before its ACK one time in ten, and
// answers AE, filing nothing, one time in twenty) while coordinators edit
// notes racing their filing and the daemon is SIGKILLed at least 10
// times. At the end every note is one document in the EHR (one new
// document per TXA-12, however often it was resent: a resend after a
// crash repeats the same MSH-10; an edit is a replacement), the EHR holds
// each note's last text, and every note shows Filed in the CRM.
func TestWritebackCrash(t *testing.T) {
	runWritebackCrash(t, wbCRM{name: "Salesforce",
		sandboxArgs: func(addr, _, _ string) []string { return []string{"--listen", addr, "--tls-listen", "off"} },
		crmConfig: func(addr, _, _ string) string {
			return fmt.Sprintf("crm:\n  sandbox:\n    embed: false\n    listen: %s\n", addr)
		},
		patient: "Account", patientBody: `{"LastName":"P%02d","EHR_Patient_Key__c":"GENHOSP|W%04d"}`,
		note: "Task", noteBody: `{"Subject":"Note %d","Description":"Text of note %d","Send_to_EHR__c":true,"WhatId":"%s"}`,
		idField: "Id", statusField: "EHR_Status__c", docField: "EHR_Document_Id__c", textField: "Description"})
}

// TestWritebackCrashDataverse is the same with the notes in Dataverse:
// tasks regarding contacts, read and marked Filed through the Dynamics
// connector.
func TestWritebackCrashDataverse(t *testing.T) {
	runWritebackCrash(t, wbCRM{name: "Dataverse",
		sandboxArgs: func(addr, tlsAddr, dir string) []string {
			return []string{"--listen", addr, "--tls-listen", tlsAddr, "--tls-cert", filepath.Join(dir, "tls.pem")}
		},
		crmConfig: func(addr, tlsAddr, dir string) string {
			return fmt.Sprintf("crm:\n  sandbox:\n    flavor: dataverse\n    embed: false\n    listen: %s\n    tls_listen: %s\n    tls_cert: %s\n",
				addr, tlsAddr, filepath.Join(dir, "tls.pem"))
		},
		patient: "contacts", patientBody: `{"lastname":"P%02d","msemr_medicalrecordnumber":"GENHOSP|W%04d"}`,
		note: "tasks", noteBody: `{"subject":"Note %d","description":"Text of note %d","new_sendtoehr":true,"regardingobjectid_contact@odata.bind":"/contacts(%s)"}`,
		idField: "activityid", statusField: "new_ehrstatus", docField: "new_ehrdocumentid", textField: "description"})
}

func runWritebackCrash(t *testing.T, side wbCRM) {
	if testing.Short() {
		t.Skip("write-back crash test skipped in -short mode")
	}
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	sandboxAddr, tlsAddr, adminAddr, mllpAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	// The EHR: files each document it answers AA to, or applies and then
	// hangs up before the ACK (an ambiguous outcome), or answers AE and
	// files nothing; it refuses (AR) a replacement of a document it never
	// filed, as EHRs do. It keeps, per TXA-12, the MSH-10s of the new
	// documents (T02) it filed and the text it holds now.
	var mu sync.Mutex
	docs := map[string]int{}                // TXA-12 → deliveries filed
	newDocs := map[string]map[string]bool{} // TXA-12 → MSH-10s of filed T02s
	text := map[string]string{}             // TXA-12 → the text the EHR holds
	applied := map[string][]string{}        // TXA-12 → MSH-10, trigger and last line of every message filed, in order
	dropped, aes, unknown := 0, 0, 0
	rng := rand.New(rand.NewPCG(7, 7))
	ehr := &mllp.Server{Logger: slog.New(slog.DiscardHandler), Handler: mllp.HandlerFunc(func(ctx context.Context, req *mllp.Request) []byte {
		m, err := hl7.Parse(req.Payload)
		if err != nil {
			return nil
		}
		doc, _ := m.GetString("TXA-12.1")
		mu.Lock()
		roll := rng.IntN(20)
		if roll == 0 {
			aes++
			mu.Unlock()
			return hl7.BuildAck(m, hl7.AE, "document store busy", nil, hl7.AckOptions{}).Bytes()
		}
		if parent, _ := m.GetString("TXA-13.1"); m.Header().Trigger != "T02" && docs[parent] == 0 {
			// A replacement of a document this EHR never filed: refused,
			// as a real EHR refuses it (the note would show Error).
			unknown++
			mu.Unlock()
			return hl7.BuildAck(m, hl7.AR, "replaced document not found", nil, hl7.AckOptions{}).Bytes()
		}
		docs[doc]++
		if m.Header().Trigger == "T02" {
			if newDocs[doc] == nil {
				newDocs[doc] = map[string]bool{}
			}
			id, _ := m.GetString("MSH-10")
			newDocs[doc][id] = true
		}
		var lines []string
		for _, seg := range m.Segments() {
			if seg.Name() == "OBX" {
				lines = append(lines, seg.Field(5))
			}
		}
		text[doc] = strings.Join(lines, "\n")
		if len(lines) > 0 {
			mid, _ := m.GetString("MSH-10")
			applied[doc] = append(applied[doc], mid+" "+m.Header().Trigger+": "+lines[len(lines)-1])
		}
		drop := roll <= 2
		if drop {
			dropped++
		}
		mu.Unlock()
		if drop {
			return nil
		}
		return hl7.BuildAck(m, hl7.AA, "", nil, hl7.AckOptions{}).Bytes()
	})}
	l, err := ehr.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ehr.Serve(l) }()
	t.Cleanup(func() { _ = ehr.Shutdown(context.Background()) })

	crm := startSandboxProcess(t, bin, sandboxAddr, side.sandboxArgs(sandboxAddr, tlsAddr, dir))
	user := func(object, body string) string {
		resp, err := http.Post(crm+"/sandbox/v1/objects/"+object, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d", object, resp.StatusCode)
		}
		return out["id"]
	}
	var accounts []string
	for p := range wbPatients {
		accounts = append(accounts, user(side.patient, fmt.Sprintf(side.patientBody, p, p)))
	}

	cfg := fmt.Sprintf(`data_dir: %s
log:
  level: warn
admin:
  listen: %s
%s  pipeline:
    linger: 100ms
writeback:
  schedule: "@every 1s"
  target:
    mllp: %s
sources:
  mllp:
    - name: wb
      listen: %s
`, filepath.Join(dir, "data"), adminAddr, side.crmConfig(sandboxAddr, tlsAddr, dir), l.Addr().String(), mllpAddr)
	d := startCrashDaemon(t, bin, filepath.Join(dir, "ehrbridge.yaml"), cfg, adminAddr)

	// Coordinators write notes, and edit them racing their filing, while
	// the daemon is killed again and again.
	var ids []string
	var idsMu sync.Mutex
	final := map[string]string{} // note id → its last text
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := range wbNotes {
			id := user(side.note, fmt.Sprintf(side.noteBody, n, n, accounts[n%wbPatients]))
			idsMu.Lock()
			ids = append(ids, id)
			final[id] = fmt.Sprintf("Text of note %d", n)
			idsMu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	stopEdits := make(chan struct{})
	edited := make(chan int)
	go func() {
		erng := rand.New(rand.NewPCG(13, 13))
		n := 0
		defer func() { edited <- n }()
		for {
			select {
			case <-stopEdits:
				return
			case <-time.After(time.Duration(20+erng.IntN(60)) * time.Millisecond):
			}
			idsMu.Lock()
			if len(ids) == 0 {
				idsMu.Unlock()
				continue
			}
			id := ids[erng.IntN(len(ids))]
			n++
			txt := fmt.Sprintf("Edit %d of the note", n)
			final[id] = txt
			idsMu.Unlock()
			body, _ := json.Marshal(map[string]string{side.textField: txt})
			req, _ := http.NewRequest(http.MethodPatch, crm+"/sandbox/v1/objects/"+side.note+"/"+id, bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				t.Errorf("edit %s: %d", id, resp.StatusCode)
				return
			}
		}
	}()
	tasks := func() []map[string]any { return objects(sandboxAddr, side.note) }
	kills := 0
	krng := rand.New(rand.NewPCG(11, 11))
	for kills < wbMinKills {
		time.Sleep(time.Duration(200+krng.IntN(400)) * time.Millisecond)
		d.killAndRestart(t)
		kills++
	}
	<-done
	close(stopEdits)
	edits := <-edited
	// Settled: every note Filed, and the EHR holds every note's last text.
	current := func() (filed, stale int) {
		for _, tk := range tasks() {
			id := tk[side.idField].(string)
			if tk[side.statusField] == "Filed" {
				filed++
			}
			mu.Lock()
			held := text["EHRB-"+id]
			mu.Unlock()
			if !strings.Contains(held, final[id]) {
				stale++
			}
		}
		return filed, stale
	}
	var lastFiled, lastStale int
	settle := max(120*time.Second, time.Duration(wbNotes+edits)*100*time.Millisecond)
	deadline := time.Now().Add(settle)
	for {
		lastFiled, lastStale = current()
		if lastFiled == wbNotes && lastStale == 0 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			aesNow := aes
			mu.Unlock()
			var why, stale []string
			for _, tk := range tasks() {
				id := tk[side.idField].(string)
				mu.Lock()
				if !strings.Contains(text["EHRB-"+id], final[id]) && len(why) < 3 {
					stale = append(stale, id)
					why = append(why, fmt.Sprintf("note %s: last text %q; filed in order: %s", id, final[id], strings.Join(applied["EHRB-"+id], " | ")))
				}
				mu.Unlock()
			}
			// What the daemon's log holds for those notes (stopped first:
			// the log opens read-only only when no daemon holds it).
			if cmd, exited := d.current(); cmd != nil {
				_ = cmd.Process.Kill()
				<-exited
			}
			why = append(why, dumpNotes(t, filepath.Join(dir, "data", checkpoint.FileName), stale)...)
			t.Fatalf("after %v: %d of %d notes Filed, %d notes whose last text the EHR does not hold (%d edits, %d AEs)\n%s\ndaemon log:\n%s",
				settle, lastFiled, wbNotes, lastStale, edits, aesNow, strings.Join(why, "\n"), crashTail(d.logs.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	var problems []string
	redelivered, lost, twice := 0, 0, 0
	for _, tk := range tasks() {
		id := tk[side.idField].(string)
		doc := "EHRB-" + id
		if tk[side.docField] != doc {
			problems = append(problems, fmt.Sprintf("note %s: document id %v", id, tk[side.docField]))
		}
		switch n := docs[doc]; {
		case n == 0:
			lost++
			problems = append(problems, fmt.Sprintf("note %s: never reached the EHR", id))
		case n > 1:
			redelivered++
		}
		if k := len(newDocs[doc]); k > 1 {
			twice++
			problems = append(problems, fmt.Sprintf("note %s: filed as %d new documents", id, k))
		}
	}
	if len(docs) != wbNotes {
		problems = append(problems, fmt.Sprintf("%d distinct documents in the EHR, want %d", len(docs), wbNotes))
	}
	stale := 0
	for _, tk := range tasks() {
		id := tk[side.idField].(string)
		if !strings.Contains(text["EHRB-"+id], final[id]) {
			stale++
		}
	}
	chaosReport(t, "write-back "+side.name, int64(kills), map[string]int{"lost": lost, "notes-filed-twice": twice, "stale": stale})
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = problems[:10]
		}
		t.Fatalf("%s", strings.Join(problems, "\n"))
	}
	t.Logf("write-back crash (%s): %d notes, %d edits, filed once each (%d delivered again after a crash or a dropped ACK, same MSH-10; %d ACKs dropped, %d AEs, %d replacements of a document the EHR never filed refused), %d kills",
		side.name, wbNotes, edits, redelivered, dropped, aes, unknown, kills)
}

// dumpNotes describes, for a failed run, what the stopped daemon's log
// holds for the given notes: each version's record (state, attempts,
// reason) and the note's filing state.
func dumpNotes(t *testing.T, path string, ids []string) []string {
	l, err := checkpoint.Open(path, checkpoint.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return []string{"log: " + err.Error()}
	}
	defer l.Close()
	var out []string
	for _, id := range ids {
		_ = l.All(func(r *checkpoint.Record) bool {
			if strings.Contains(r.Key, id) {
				out = append(out, fmt.Sprintf("  record %d %s: %s, %d attempts, reason %q, received %s, updated %s", r.ID, r.Key, r.State, r.Attempts, r.Reason, r.Received.Format(time.RFC3339Nano), r.Updated.Format(time.RFC3339Nano)))
			}
			return true
		})
		st, ok, err := l.SourceState(checkpoint.FilingKey(id))
		out = append(out, fmt.Sprintf("  filing state of %s: %s (found %v, err %v)", id, st, ok, err))
	}
	return out
}
