package writeback

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// Notes filed as DocumentReferences on Medplum's FHIR router (in memory)
// with SMART Backend Services auth: the patient and encounter found by
// identifier, created with If-None-Exist, so a resend makes no second
// document; a patient the FHIR server does not know holds the note.
func TestInteropMedplumFHIR(t *testing.T) {
	dir := interop.NodeDir(t)
	key, _ := testcerts.RSASigning(t)
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "client.pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	peer := interop.Start(t, dir, "node", "--experimental-websocket", "medplum_fhir_server.mjs", "--smart-key", pubFile, "--client-id", "ehrbridge")
	port := strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 60*time.Second), "LISTENING ")
	root := "http://127.0.0.1:" + port
	auth := &fhirhttp.BackendServices{TokenURL: root + "/auth/token", ClientID: "ehrbridge", Key: key}
	target := &ehr.FHIRTarget{Base: root + "/fhir/R4", Auth: auth}
	fc := &fhirhttp.Client{Base: target.Base, Auth: auth}
	ctx := context.Background()
	// The EHR's FHIR server knows the patient and the visit.
	post := func(typ string, res map[string]any) string {
		status, body, err := fc.Do(ctx, http.MethodPost, "/"+typ, res, nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("seed %s: %d %v %s", typ, status, err, body)
		}
		var out fhirResource
		_ = json.Unmarshal(body, &out)
		return out.ID
	}
	patID := post("Patient", map[string]any{"resourceType": "Patient", "identifier": []any{map[string]string{"system": "GENHOSP", "value": "M1"}}, "name": []any{map[string]any{"family": "Doe"}}})
	encID := post("Encounter", map[string]any{"resourceType": "Encounter", "status": "in-progress", "class": map[string]string{"code": "IMP"},
		"identifier": []any{map[string]string{"system": "GENHOSP", "value": "V777"}}, "subject": map[string]string{"reference": "Patient/" + patID}})

	r := newRig(t, func(string) connectors.EHRTarget { return target })
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|M1"}`)
	r.user(t, "POST", "ClinicalEncounter", `{"PatientId":"`+acct+`","Category":"Inpatient Encounter","Status":"In Progress","StartDate":"2026-01-04T08:00:00.000+0000","EHR_Encounter_Key__c":"GENHOSP|V777"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Discharge call","Description":"Agrees to the plan.","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "the note filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })

	docs, err := fhirSearch(ctx, fc, "DocumentReference", url.Values{"subject": {"Patient/" + patID}})
	if err != nil || len(docs) != 1 {
		t.Fatalf("documents for the patient: %v %v", docs, err)
	}
	status, body, err := fc.Do(ctx, http.MethodGet, "/DocumentReference/"+docs[0].ID, nil, nil)
	if err != nil || status != 200 {
		t.Fatalf("read: %d %v", status, err)
	}
	var dr struct {
		MasterIdentifier struct{ Value string } `json:"masterIdentifier"`
		Context          struct {
			Encounter []struct{ Reference string } `json:"encounter"`
		} `json:"context"`
		Content []struct {
			Attachment struct{ Data string } `json:"attachment"`
		} `json:"content"`
	}
	_ = json.Unmarshal(body, &dr)
	if dr.MasterIdentifier.Value != "EHRB-"+task || len(dr.Context.Encounter) != 1 || dr.Context.Encounter[0].Reference != "Encounter/"+encID {
		t.Errorf("document %s", body)
	}
	// A resend of the same version (after a crash, say) finds the first.
	note := connectors.Note{ID: task, Version: "v-resend-test", Subject: "s", Text: "t"}
	doc := &connectors.Document{Note: &note, ID: "EHRB-" + task, Authority: "GENHOSP", MRN: "M1"}
	for range 2 {
		if err := target.File(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	found, _ := fhirSearch(ctx, fc, "DocumentReference", url.Values{"identifier": {"urn:ehrbridge:note|EHRB-" + task + "/v-resend-test"}})
	if len(found) != 1 {
		t.Errorf("%d documents after filing one version twice", len(found))
	}
	// A patient the FHIR server does not know: held.
	other := r.user(t, "POST", "Account", `{"LastName":"NEW","EHR_Patient_Key__c":"GENHOSP|UNKNOWN"}`)
	task2 := r.user(t, "POST", "Task", `{"WhatId":"`+other+`","Subject":"x","Description":"y","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "held", func() bool { return r.task(t, task2)["EHR_Status__c"] == "Held" })
}

type fhirResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

// fhirSearch returns the resources of type typ a search on the FHIR
// server finds, for checking what write-back filed.
func fhirSearch(ctx context.Context, c *fhirhttp.Client, typ string, q url.Values) ([]fhirResource, error) {
	status, body, err := c.Do(ctx, http.MethodGet, "/"+typ+"?"+q.Encode(), nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("search %s: HTTP %d", typ, status)
	}
	var b struct {
		Entry []struct {
			Resource fhirResource `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	var out []fhirResource
	for _, e := range b.Entry {
		if e.Resource.ResourceType == typ {
			out = append(out, e.Resource)
		}
	}
	return out, nil
}
