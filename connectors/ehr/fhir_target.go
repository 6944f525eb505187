package ehr

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
)

// FHIRTarget files each note as a DocumentReference on the EHR's FHIR R4 server:
// the patient found by identifier search, the encounter by identifier if
// there is one, created with If-None-Exist on the document's identifier
// (so a resend finds the first and creates nothing), then read back to
// confirm.
type FHIRTarget struct {
	// Base is the server's base URL, like https://ehr.example/fhir/R4.
	Base string
	// PatientSystem and EncounterSystem turn an HL7 assigning authority
	// into the identifier system the FHIR server uses; default the
	// authority itself.
	PatientSystem, EncounterSystem func(authority string) string
	// DocSystem is the system of our document identifiers; default
	// "urn:ehrbridge:note".
	DocSystem string
	// TypeCode is the LOINC document type; default 34746-8 (nurse note).
	TypeCode, TypeDisplay string
	// Auth gives the bearer token; nil sends none.
	Auth fhirhttp.TokenSource
	HTTP *http.Client
}

var _ connectors.EHRTarget = (*FHIRTarget)(nil)

// InFlight is how long after a request the FHIR server may still apply
// it: the HTTP client's timeout, else 60 s.
func (f *FHIRTarget) InFlight() time.Duration {
	if f.HTTP != nil && f.HTTP.Timeout > 0 {
		return f.HTTP.Timeout
	}
	return 60 * time.Second
}

func (f *FHIRTarget) client() *fhirhttp.Client {
	return &fhirhttp.Client{Base: f.Base, Auth: f.Auth, HTTP: f.HTTP}
}

// File implements connectors.EHRTarget.
func (f *FHIRTarget) File(ctx context.Context, doc *connectors.Document) error {
	docSystem := cmp.Or(f.DocSystem, "urn:ehrbridge:note")
	patSystem := doc.Authority
	if f.PatientSystem != nil {
		patSystem = f.PatientSystem(doc.Authority)
	}
	patients, err := f.search(ctx, "Patient", url.Values{"identifier": {patSystem + "|" + doc.MRN}})
	if err != nil {
		return err
	}
	if len(patients) == 0 {
		return &connectors.Held{Reason: "the EHR's FHIR server has no patient with this identifier"}
	}
	subject := "Patient/" + patients[0].ID
	var encounter string
	if doc.Visit != "" {
		encSystem := doc.Authority
		if f.EncounterSystem != nil {
			encSystem = f.EncounterSystem(doc.Authority)
		}
		encs, err := f.search(ctx, "Encounter", url.Values{"identifier": {encSystem + "|" + doc.Visit}})
		if err != nil {
			return err
		}
		if len(encs) > 0 {
			encounter = "Encounter/" + encs[0].ID
		}
	}
	value := doc.ID + "/" + doc.Note.Version
	text := doc.Note.Text
	if doc.Note.Subject != "" {
		text = doc.Note.Subject + "\n" + text
	}
	dr := map[string]any{
		"resourceType":     "DocumentReference",
		"status":           "current",
		"masterIdentifier": map[string]string{"system": docSystem, "value": doc.ID},
		"identifier":       []map[string]string{{"system": docSystem, "value": value}},
		"type": map[string]any{"coding": []map[string]string{{"system": "http://loinc.org",
			"code": cmp.Or(f.TypeCode, "34746-8"), "display": cmp.Or(f.TypeDisplay, "Nurse Note")}}},
		"subject": map[string]string{"reference": subject},
		"date":    time.Now().UTC().Format(time.RFC3339),
		"content": []map[string]any{{"attachment": map[string]any{"contentType": "text/plain; charset=utf-8",
			"data": base64.StdEncoding.EncodeToString([]byte(text)), "title": doc.Note.Subject}}},
	}
	if encounter != "" {
		dr["context"] = map[string]any{"encounter": []map[string]string{{"reference": encounter}}}
	}
	if doc.Author != "" {
		dr["author"] = []map[string]any{{"identifier": map[string]string{"value": doc.Author}}}
	}
	if doc.Note.Filed != "" {
		dr["relatesTo"] = []map[string]any{{"code": "replaces", "target": map[string]any{"identifier": map[string]string{"system": docSystem, "value": doc.ID}}}}
	}
	condition := "identifier=" + url.QueryEscape(docSystem+"|"+value)
	status, body, err := f.client().Do(ctx, http.MethodPost, "/DocumentReference", dr, map[string]string{"If-None-Exist": condition})
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fhirError(status, body)
	}
	// Read back: the document must be there, once.
	found, err := f.search(ctx, "DocumentReference", url.Values{"identifier": {docSystem + "|" + value}})
	if err != nil {
		return err
	}
	if len(found) != 1 {
		return &connectors.Error{Kind: connectors.Transient, Code: "FHIR_READBACK", Message: fmt.Sprintf("%d documents found after create", len(found))}
	}
	return nil
}

type fhirResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

func (f *FHIRTarget) search(ctx context.Context, typ string, q url.Values) ([]fhirResource, error) {
	status, body, err := f.client().Do(ctx, http.MethodGet, "/"+typ+"?"+q.Encode(), nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fhirError(status, body)
	}
	var b struct {
		Entry []struct {
			Resource fhirResource `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "FHIR_BAD_RESPONSE"}
	}
	var out []fhirResource
	for _, e := range b.Entry {
		if e.Resource.ResourceType == typ {
			out = append(out, e.Resource)
		}
	}
	return out, nil
}

// fhirError classifies a FHIR server's answer: 5xx and 429 are worth
// retrying; 401/403 are a configuration problem (retry: it may be fixed);
// other 4xx are a rejection with the OperationOutcome's text.
func fhirError(status int, body []byte) error {
	if fhirhttp.Transient(status) {
		return &connectors.Error{Kind: connectors.Transient, Code: fmt.Sprintf("FHIR_HTTP_%d", status), Status: status}
	}
	return &connectors.Rejected{Text: fhirhttp.Outcome(status, body)}
}
