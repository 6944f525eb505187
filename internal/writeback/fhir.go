package writeback

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// FHIR files each note as a DocumentReference on the EHR's FHIR R4 server:
// the patient found by identifier search, the encounter by identifier if
// there is one, created with If-None-Exist on the document's identifier
// (so a resend finds the first and creates nothing), then read back to
// confirm.
type FHIR struct {
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
	Auth TokenSource
	HTTP *http.Client
}

// TokenSource returns a bearer token.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a bearer token from the configuration.
type StaticToken string

// Token implements TokenSource.
func (s StaticToken) Token(context.Context) (string, error) { return string(s), nil }

// File implements Target.
func (f *FHIR) File(ctx context.Context, doc *Document) error {
	docSystem := orDefault(f.DocSystem, "urn:ehrbridge:note")
	patSystem := doc.Authority
	if f.PatientSystem != nil {
		patSystem = f.PatientSystem(doc.Authority)
	}
	patients, err := f.search(ctx, "Patient", url.Values{"identifier": {patSystem + "|" + doc.MRN}})
	if err != nil {
		return err
	}
	if len(patients) == 0 {
		return &errHeld{"the EHR's FHIR server has no patient with this identifier"}
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
			"code": orDefault(f.TypeCode, "34746-8"), "display": orDefault(f.TypeDisplay, "Nurse Note")}}},
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
	status, body, err := f.do(ctx, http.MethodPost, "/DocumentReference", dr, map[string]string{"If-None-Exist": condition})
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

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

type fhirResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

func (f *FHIR) search(ctx context.Context, typ string, q url.Values) ([]fhirResource, error) {
	status, body, err := f.do(ctx, http.MethodGet, "/"+typ+"?"+q.Encode(), nil, nil)
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

func (f *FHIR) do(ctx context.Context, method, path string, body any, headers map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(f.Base, "/")+path, rd)
	if err != nil {
		return 0, nil, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BAD_URL"}
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if f.Auth != nil {
		tok, err := f.Auth.Token(ctx)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := f.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, &connectors.Error{Kind: connectors.Transient, Code: "EHR_UNREACHABLE"}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, &connectors.Error{Kind: connectors.Transient, Code: "EHR_UNREACHABLE"}
	}
	return resp.StatusCode, b, nil
}

// fhirError classifies a FHIR server's answer: 5xx and 429 are worth
// retrying; 401/403 are a configuration problem (retry: it may be fixed);
// other 4xx are a rejection with the OperationOutcome's text.
func fhirError(status int, body []byte) error {
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusUnauthorized, status == http.StatusForbidden:
		return &connectors.Error{Kind: connectors.Transient, Code: fmt.Sprintf("FHIR_HTTP_%d", status), Status: status}
	}
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	text := fmt.Sprintf("HTTP %d", status)
	if json.Unmarshal(body, &oo) == nil && len(oo.Issue) > 0 {
		text += ": " + orDefault(oo.Issue[0].Details.Text, oo.Issue[0].Diagnostics)
	}
	return &Rejected{Text: text}
}

// BackendServices gets bearer tokens by SMART Backend Services: a client
// credentials grant authenticated with a JWT assertion signed (RS384) by
// the client's private key. Tokens are cached until a minute before they
// expire.
type BackendServices struct {
	TokenURL, ClientID string
	Key                *rsa.PrivateKey
	KeyID              string
	Scope              string // default "system/DocumentReference.write system/Patient.read system/Encounter.read"
	HTTP               *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// ParseRSAKey reads an unencrypted PEM RSA private key (PKCS#1 or #8).
func ParseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block in the key file")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("the key file holds no RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("the key is not RSA")
	}
	return rk, nil
}

// Token implements TokenSource.
func (b *BackendServices) Token(ctx context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != "" && time.Now().Before(b.expires) {
		return b.token, nil
	}
	assertion, err := b.assertion()
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {orDefault(b.Scope, "system/DocumentReference.write system/Patient.read system/Encounter.read")},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_AUTH_URL"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := b.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Transient, Code: "FHIR_AUTH_UNREACHABLE"}
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.AccessToken == "" {
		return "", &connectors.Error{Kind: connectors.Transient, Code: fmt.Sprintf("FHIR_AUTH_HTTP_%d", resp.StatusCode)}
	}
	b.token = out.AccessToken
	b.expires = time.Now().Add(time.Duration(max(out.ExpiresIn, 120)-60) * time.Second)
	return b.token, nil
}

// assertion is the signed client authentication JWT.
func (b *BackendServices) assertion() (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	header := map[string]string{"alg": "RS384", "typ": "JWT"}
	if b.KeyID != "" {
		header["kid"] = b.KeyID
	}
	claims := map[string]any{"iss": b.ClientID, "sub": b.ClientID, "aud": b.TokenURL, "jti": hex.EncodeToString(jti[:]),
		"exp": time.Now().Add(4 * time.Minute).Unix()}
	enc := func(v any) string {
		j, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(j)
	}
	signing := enc(header) + "." + enc(claims)
	digest := sha512.Sum384([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, b.Key, crypto.SHA384, digest[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
