package main

import (
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

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

const (
	wbNotes    = 300
	wbPatients = 30
	wbMinKills = 10
)

// wbCRM is the CRM side of the write-back crash test: how to run the
// sandbox, the config's crm section, and the names of patients and notes.
type wbCRM struct {
	name        string
	sandboxArgs func(addr, tlsAddr, dir string) []string
	crmConfig   func(addr, tlsAddr, dir string) string
	// patient and patientBody (with %d the patient number, twice) make a
	// patient; note and noteBody (note number twice, then the patient's
	// id) a note; idField, statusField and docField read a note.
	patient, patientBody, note, noteBody, idField, statusField, docField string
}

// TestWritebackCrash files 300 notes over MLLP into an EHR that drops one
// answer in ten, while the daemon is SIGKILLed at least 10 times during
// the write-back. At the end every note version exists once in the EHR
// (distinct TXA-12; a resend after a crash repeats the same document) and
// every note shows Filed in the CRM.
func TestWritebackCrash(t *testing.T) {
	runWritebackCrash(t, wbCRM{name: "Salesforce",
		sandboxArgs: func(addr, _, _ string) []string { return []string{"--listen", addr, "--tls-listen", "off"} },
		crmConfig: func(addr, _, _ string) string {
			return fmt.Sprintf("crm:\n  sandbox:\n    embed: false\n    listen: %s\n", addr)
		},
		patient: "Account", patientBody: `{"LastName":"P%02d","EHR_Patient_Key__c":"GENHOSP|W%04d"}`,
		note: "Task", noteBody: `{"Subject":"Note %d","Description":"Text of note %d","Send_to_EHR__c":true,"WhatId":"%s"}`,
		idField: "Id", statusField: "EHR_Status__c", docField: "EHR_Document_Id__c"})
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
		idField: "activityid", statusField: "new_ehrstatus", docField: "new_ehrdocumentid"})
}

func runWritebackCrash(t *testing.T, side wbCRM) {
	if testing.Short() {
		t.Skip("write-back crash test skipped in -short mode")
	}
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	sandboxAddr, tlsAddr, adminAddr, mllpAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	// The EHR: records each document, and now and then applies a message
	// but drops the connection before its ACK (an ambiguous outcome).
	var mu sync.Mutex
	docs := map[string]int{} // TXA-12 → deliveries
	dropped := 0
	rng := rand.New(rand.NewPCG(7, 7))
	ehr := &mllp.Server{Logger: slog.New(slog.DiscardHandler), Handler: mllp.HandlerFunc(func(ctx context.Context, req *mllp.Request) []byte {
		m, err := hl7.Parse(req.Payload)
		if err != nil {
			return nil
		}
		doc, _ := m.GetString("TXA-12.1")
		mu.Lock()
		docs[doc]++
		drop := rng.IntN(10) == 0
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

	// Coordinators write notes while the daemon is killed again and again.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := range wbNotes {
			user(side.note, fmt.Sprintf(side.noteBody, n, n, accounts[n%wbPatients]))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	tasks := func() []map[string]any { return objects(sandboxAddr, side.note) }
	filed := func() int {
		n := 0
		for _, tk := range tasks() {
			if tk[side.statusField] == "Filed" {
				n++
			}
		}
		return n
	}
	kills := 0
	krng := rand.New(rand.NewPCG(11, 11))
	for kills < wbMinKills {
		time.Sleep(time.Duration(200+krng.IntN(400)) * time.Millisecond)
		d.killAndRestart(t)
		kills++
	}
	<-done
	waitFor(t, 90*time.Second, "every note filed", func() bool { return filed() == wbNotes })

	mu.Lock()
	defer mu.Unlock()
	var problems []string
	redelivered := 0
	for _, tk := range tasks() {
		id := tk[side.idField].(string)
		doc := "EHRB-" + id
		if tk[side.docField] != doc {
			problems = append(problems, fmt.Sprintf("note %s: document id %v", id, tk[side.docField]))
		}
		switch n := docs[doc]; {
		case n == 0:
			problems = append(problems, fmt.Sprintf("note %s: never reached the EHR", id))
		case n > 1:
			redelivered++
		}
	}
	if len(docs) != wbNotes {
		problems = append(problems, fmt.Sprintf("%d distinct documents in the EHR, want %d", len(docs), wbNotes))
	}
	// Each note is settled as soon as it is filed: a document is sent
	// again only after an unanswered send or for the one under way at a
	// kill.
	if redelivered > dropped+kills {
		problems = append(problems, fmt.Sprintf("%d documents sent more than once, more than the %d unanswered sends and %d kills explain", redelivered, dropped, kills))
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = problems[:10]
		}
		t.Fatalf("%s", strings.Join(problems, "\n"))
	}
	t.Logf("write-back crash (%s): %d notes filed once each (%d delivered again after a crash or a dropped ACK, same TXA-12; %d ACKs dropped), %d kills", side.name, wbNotes, redelivered, dropped, kills)
}
