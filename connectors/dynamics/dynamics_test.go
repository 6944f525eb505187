package dynamics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/connectortest"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
	"github.com/ehrbridge/ehrbridge/mappings"
)

type rig struct {
	sb   *sandbox.Server
	base string
	http *http.Client
	logs *syncbuf.Buffer
}

func newRig(t *testing.T, opts sandbox.Options) *rig {
	t.Helper()
	dir := t.TempDir()
	cert, certPEM, err := sandbox.LoadOrCreateCert(filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	sb, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sb.ListenTLS("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &rig{sb: sb, base: "https://" + addr.String(), logs: &syncbuf.Buffer{},
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}}
}

func (r *rig) client(t *testing.T, edit func(*Config)) *Client {
	t.Helper()
	cred, err := NewCredential(Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
		AuthorityHost: r.base, HTTPClient: r.http})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{URL: r.base, Credential: cred, HTTPClient: r.http, Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) fault(t *testing.T, method, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, r.base+"/sandbox/v1/faults", strings.NewReader(body))
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// The Dynamics sink passes the connector conformance suite against the
// sandbox's Dataverse side.
func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Target {
		r := newRig(t, sandbox.Options{})
		c := r.client(t, func(cfg *Config) { cfg.BatchSize = 3 })
		return connectortest.Target{
			Sink: &Sink{Client: c},
			Records: func(object string) []map[string]any {
				var out []map[string]any
				for _, rec := range r.sb.DataverseRecords(object) {
					m := map[string]any(rec)
					m["msemr_EncounterPatientIdentifier"] = rec["_msemr_encounterpatientidentifier_value"]
					out = append(out, m)
				}
				return out
			},
			Throttle: func(d time.Duration) {
				r.fault(t, "POST", fmt.Sprintf(`{"request_limit_exceeded":true,"seconds":%g}`, d.Seconds()))
			},
			DropAnswers: func(ratio float64) {
				if ratio == 0 {
					r.fault(t, "DELETE", "")
					return
				}
				r.fault(t, "POST", fmt.Sprintf(`{"drop_after_commit_ratio":%g}`, ratio))
			},
			Unavailable: func(n int) { r.fault(t, "POST", fmt.Sprintf(`{"status":503,"count":%d}`, n)) },
			Patient:     "contact", PatientKey: "msemr_medicalrecordnumber", PatientText: "lastname",
			Encounter: "msemr_encounter", EncounterKey: "msemr_encounteridentifier", EncounterToPat: "msemr_EncounterPatientIdentifier",
			Invalid: func(key string) connectors.Op {
				// A column that does not exist: Dataverse answers 400.
				return connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber", Key: key,
					Fields: []mappings.Field{{Name: "no such column", Value: mappings.Str("x")}}}
			},
			IDOf: func(rec map[string]any) string { s, _ := rec["contactid"].(string); return s },
		}
	})
}

// Keys with characters that mean something in a URL or an OData key
// (quote, parentheses, comma, equals, spaces, '$', '@', '^', '~', '|')
// reach Dataverse as written, in the URL and in @odata.bind references.
// A key with a character Dataverse cannot address a row by (/ # < > * %
// & : \ ? +; the mappings escape them with keysafe()) is refused for
// good before it is sent, with an error that says so and quotes no key.
func TestKeyEscaping(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	s := &Sink{Client: c}
	keys := []string{"GH|O'Brien", "A(B),c=1 $x@y^z~2F é", "plain"}
	var ops []connectors.Op
	for i, k := range keys {
		ops = append(ops,
			connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber", Key: k,
				Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("P")}}},
			connectors.Op{Object: "msemr_encounter", Action: mappings.Upsert, KeyField: "msemr_encounteridentifier", Key: fmt.Sprint("V", i),
				Fields: []mappings.Field{{Name: "msemr_EncounterPatientIdentifier", Value: mappings.Value{Kind: mappings.Ref,
					Ref: &mappings.Reference{Object: "contact", KeyField: "msemr_medicalrecordnumber", Key: k}}}}})
	}
	for i, res := range s.Apply(context.Background(), ops) {
		if res.Err != nil {
			t.Fatalf("op %d: %v", i, res.Err)
		}
	}
	contacts := r.sb.DataverseRecords("contact")
	byKey := map[string]string{}
	for _, c := range contacts {
		byKey[c["msemr_medicalrecordnumber"].(string)] = c["contactid"].(string)
	}
	for _, k := range keys {
		if byKey[k] == "" {
			t.Errorf("no contact keyed %q: %v", k, byKey)
		}
	}
	for i, e := range r.sb.DataverseRecords("msemr_encounter") {
		if e["_msemr_encounterpatientidentifier_value"] != byKey[keys[i]] {
			t.Errorf("encounter %d points at %v, want %s", i, e["_msemr_encounterpatientidentifier_value"], byKey[keys[i]])
		}
	}
	for _, k := range []string{"A/B", "A#1", "x?y", "50%", "urn:x"} {
		res := s.Apply(context.Background(), []connectors.Op{{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber", Key: k,
			Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("P")}}}})
		var ce *connectors.Error
		if !errors.As(res[0].Err, &ce) || ce.Kind != connectors.Permanent || ce.Code != "KEY_CHARACTERS" || strings.Contains(ce.Error(), k) {
			t.Errorf("a key with a forbidden character: %v (%T), want a permanent KEY_CHARACTERS error without the key", res[0].Err, res[0].Err)
		}
		res = s.Apply(context.Background(), []connectors.Op{{Object: "msemr_encounter", Action: mappings.Upsert, KeyField: "msemr_encounteridentifier", Key: "V9",
			Fields: []mappings.Field{{Name: "msemr_EncounterPatientIdentifier", Value: mappings.Value{Kind: mappings.Ref,
				Ref: &mappings.Reference{Object: "contact", KeyField: "msemr_medicalrecordnumber", Key: k}}}}}})
		if !errors.As(res[0].Err, &ce) || ce.Code != "KEY_CHARACTERS" || strings.Contains(ce.Error(), k) {
			t.Errorf("a reference by a key with a forbidden character: %v", res[0].Err)
		}
	}
	if n := len(r.sb.DataverseRecords("msemr_encounter")); n != len(keys) {
		t.Errorf("%d encounters", n)
	}
}

// A 429 from one worker pauses them all until Retry-After; nothing is sent
// meanwhile, and the log names no URL or key.
func TestThrottleSharedAcrossWorkers(t *testing.T) {
	r := newRig(t, sandbox.Options{DataverseRequestLimit: 4})
	c := r.client(t, func(cfg *Config) { cfg.BatchSize = 1; cfg.MaxConcurrent = 4 })
	s := &Sink{Client: c}
	var ops []connectors.Op
	for i := range 12 {
		ops = append(ops, connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber",
			Key: fmt.Sprint("MRN-SECRET-", i), Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("P")}}})
	}
	res := s.Apply(context.Background(), ops)
	ok, throttled := 0, 0
	for _, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case connectors.KindOf(r.Err) == connectors.Throttled:
			throttled++
		}
	}
	if ok != 4 || throttled != 8 || c.PausedUntil().IsZero() {
		t.Errorf("ok %d, throttled %d, paused until %v", ok, throttled, c.PausedUntil())
	}
	sent := r.sb.Stats().ByEndpoint["dv_upsert"]
	if sent > 4+4 {
		t.Errorf("%d upserts reached the sandbox: workers kept sending during the pause", sent)
	}
	if strings.Contains(r.logs.String(), "MRN-SECRET") || strings.Contains(r.logs.String(), "/api/data") {
		t.Errorf("log leaks a key or URL:\n%s", r.logs)
	}
}

// Query follows @odata.nextLink; Update patches a row by id.
func TestQueryAndUpdate(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	s := &Sink{Client: c}
	var ops []connectors.Op
	for i := range 1200 {
		ops = append(ops, connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber",
			Key: fmt.Sprintf("K%04d", i), Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("P")}}})
	}
	for _, res := range s.Apply(context.Background(), ops) {
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	rows, err := c.Query(context.Background(), "contact", "$select=contactid&$orderby=msemr_medicalrecordnumber", 0)
	if err != nil || len(rows) != 1200 {
		t.Fatalf("query: %d rows, %v", len(rows), err)
	}
	// At most 5,000 rows with $top: one answer, no paging (Dataverse
	// ignores $top beside odata.maxpagesize, and a paged read can miss
	// rows that change between pages when its order is not unique).
	before := r.sb.Stats().ByEndpoint["dv_query"]
	if rows, err := c.Query(context.Background(), "contact", "$select=contactid&$orderby=modifiedon&$top=1100", 1100); err != nil || len(rows) != 1100 {
		t.Fatalf("query with $top: %d rows, %v", len(rows), err)
	}
	if n := r.sb.Stats().ByEndpoint["dv_query"] - before; n != 1 {
		t.Errorf("a query for 1,100 rows with $top took %d requests, want 1", n)
	}
	id := rows[0]["contactid"].(string)
	if err := c.Update(context.Background(), "contact", id, map[string]any{"lastname": "Q"}); err != nil {
		t.Fatal(err)
	}
	for _, row := range r.sb.DataverseRecords("contact") {
		if row["contactid"] == id && row["lastname"] != "Q" {
			t.Errorf("after update: %v", row)
		}
	}
	if err := c.Update(context.Background(), "contact", "00000000-0000-4000-8000-000000000000", map[string]any{"lastname": "Q"}); connectors.KindOf(err) != connectors.Permanent {
		t.Errorf("update of a missing row: %v", err)
	}
	if reqs := r.sb.Stats().ByEndpoint["dv_batch"]; reqs != 24 {
		t.Errorf("%d $batch requests for 1200 upserts in batches of 50", reqs)
	}
}

// A certificate credential (PEM certificate and key, as crm.dynamics's
// cert_file and key_file hold them) signs in; a wrong secret does not,
// and its error is transient with the identity platform's code.
func TestCertificateCredential(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, sandbox.Options{DataverseCert: cert})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cred, err := NewCredential(Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", CertPEM: certPEM, KeyPEM: keyPEM,
		AuthorityHost: r.base, HTTPClient: r.http})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: r.base, Credential: cred, HTTPClient: r.http, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.WhoAmI(context.Background()); err != nil || id != sandbox.SandboxUserID {
		t.Errorf("WhoAmI with a certificate: %q %v", id, err)
	}
	bad, _ := NewCredential(Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: "wrong", AuthorityHost: r.base, HTTPClient: r.http})
	c, _ = New(Config{URL: r.base, Credential: bad, HTTPClient: r.http, Logger: slog.New(slog.DiscardHandler), RetryMax: -1})
	_, err = c.WhoAmI(context.Background())
	var ce *connectors.Error
	if !errors.As(err, &ce) || ce.Kind != connectors.Transient || ce.Code != "AADSTS7000215" || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := NewCredential(Auth{TenantID: "t", ClientID: "c", ClientSecret: "s", ManagedIdentity: true}); err == nil {
		t.Error("two credentials at once were accepted")
	}
}
