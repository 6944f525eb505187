// Package fhirtest is a FHIR R4 search server for tests, in memory: what
// the Medplum router (the real peer) does not do — paging with link[next]
// — and what crash tests need — resources changing while a client reads
// them. It serves GET {base}/{Type}?_lastUpdated=gtT|geT&_count=N (sorted
// by lastUpdated) and GET {base}/{Type}/{id}; optionally behind SMART Backend Services auth.
package fhirtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server holds the resources; Add changes them while it serves.
type Server struct {
	// Token, when set, is the bearer token requests must carry.
	Token string
	// NoPaging returns full pages without link[next], as some servers do.
	NoPaging bool
	// Latency delays each answer.
	Latency time.Duration
	// SMARTKey, when set, makes the server a SMART Backend Services
	// resource server: POST {base}/auth/token takes a client_credentials
	// grant with an RS384 client assertion signed by this key's private
	// half, and the other requests need the token it issued.
	SMARTKey *rsa.PublicKey
	// TokenLifetime is the issued tokens' expires_in; default 300s.
	TokenLifetime time.Duration
	// Bulk offers the Bulk Data system-level $export (in the
	// CapabilityStatement at {base}/metadata): the kick-off snapshots the
	// resources, the status URL answers 202 BulkPolls times, then the
	// manifest; files are NDJSON, one per type.
	Bulk      bool
	BulkPolls int
	// BulkLineDelay slows the file downloads, per line (crash tests).
	BulkLineDelay time.Duration

	mu       sync.Mutex
	current  map[string]map[string]any // Type/id → latest version
	versions map[string]int
	requests int
	tokens   map[string]time.Time // issued token → expiry
	grants   int
	deleted  map[string]deletion // Type/id → its delete
	exports  []*export
}

// export is a $export job: a snapshot taken at kick-off.
type export struct {
	at    time.Time
	files map[string][][]byte // type → NDJSON lines
	polls int
	gone  bool
}

// deletion is a delete in the history.
type deletion struct {
	version int
	at      time.Time
}

// Delete deletes Type/id at at: reads answer 410 Gone, searches leave it
// out, and the type's history shows the delete.
func (s *Server) Delete(typ, id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := typ + "/" + id
	s.versions[ref]++
	delete(s.current, ref)
	if s.deleted == nil {
		s.deleted = map[string]deletion{}
	}
	s.deleted[ref] = deletion{version: s.versions[ref], at: at}
}

// New makes an empty server.
func New() *Server {
	return &Server{current: map[string]map[string]any{}, versions: map[string]int{}}
}

// Add stores a new version of Type/id changed at at, with the fields of
// body, and returns its version number.
func (s *Server) Add(typ, id string, at time.Time, body map[string]any) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := typ + "/" + id
	s.versions[ref]++
	v := s.versions[ref]
	delete(s.deleted, ref)
	r := map[string]any{"resourceType": typ, "id": id,
		"meta": map[string]any{"versionId": strconv.Itoa(v), "lastUpdated": at.UTC().Format(time.RFC3339Nano)}}
	for k, val := range body {
		r[k] = val
	}
	s.current[ref] = r
	return v
}

// Requests counts the requests served.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func lastUpdated(r map[string]any) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r["meta"].(map[string]any)["lastUpdated"].(string))
	return t
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.Latency > 0 {
		time.Sleep(s.Latency)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.SMARTKey != nil && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/token") {
		s.issueToken(w, r)
		return
	}
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.SMARTKey != nil {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if exp, ok := s.tokens[tok]; !ok || time.Now().After(exp) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/fhir+json")
	if s.bulk(w, r, parts) {
		return
	}
	if len(parts) >= 2 && s.current[parts[len(parts)-2]+"/"+parts[len(parts)-1]] != nil {
		_ = json.NewEncoder(w).Encode(s.current[parts[len(parts)-2]+"/"+parts[len(parts)-1]])
		return
	}
	if len(parts) >= 2 && parts[len(parts)-1] == "_history" && typeName(parts[len(parts)-2]) {
		s.history(w, r, parts[len(parts)-2])
		return
	}
	if len(parts) >= 2 && typeName(parts[len(parts)-2]) {
		if _, gone := s.deleted[parts[len(parts)-2]+"/"+parts[len(parts)-1]]; gone {
			w.WriteHeader(http.StatusGone)
			_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
				"issue": []any{map[string]any{"severity": "error", "code": "deleted"}}})
			return
		}
		w.WriteHeader(http.StatusNotFound) // a read of a resource that was never here
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
			"issue": []any{map[string]any{"severity": "error", "code": "not-found"}}})
		return
	}
	typ := parts[len(parts)-1]
	q := r.URL.Query()
	count, _ := strconv.Atoi(q.Get("_count"))
	if count <= 0 {
		count = 50
	}
	offset, _ := strconv.Atoi(q.Get("_offset"))
	var since time.Time
	inclusive := false
	if v := q.Get("_lastUpdated"); len(v) > 2 {
		since, _ = time.Parse(time.RFC3339Nano, v[2:])
		inclusive = v[:2] == "ge"
	}
	var match []map[string]any
	for _, res := range s.current {
		at := lastUpdated(res)
		if res["resourceType"] == typ && (since.IsZero() || at.After(since) || inclusive && at.Equal(since)) {
			match = append(match, res)
		}
	}
	sort.Slice(match, func(i, j int) bool {
		a, b := lastUpdated(match[i]), lastUpdated(match[j])
		if !a.Equal(b) {
			return a.Before(b)
		}
		return match[i]["id"].(string) < match[j]["id"].(string)
	})
	end := min(offset+count, len(match))
	entries := []map[string]any{}
	for _, res := range match[min(offset, len(match)):end] {
		entries = append(entries, map[string]any{"resource": res})
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries}
	if end < len(match) && !s.NoPaging {
		q.Set("_offset", fmt.Sprint(end))
		b["link"] = []map[string]string{{"relation": "next", "url": "http://" + r.Host + r.URL.Path + "?" + q.Encode()}}
	}
	_ = json.NewEncoder(w).Encode(b)
}

// Exports counts the $export kick-offs.
func (s *Server) Exports() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.exports)
}

// Grants counts the access tokens issued.
func (s *Server) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// issueToken is the SMART Backend Services token endpoint: it checks the
// client assertion's form, audience, expiry and RS384 signature.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	refuse := func(msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": msg})
	}
	if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		refuse("not a client_credentials grant with a JWT assertion")
		return
	}
	parts := strings.Split(r.PostForm.Get("client_assertion"), ".")
	if len(parts) != 3 {
		refuse("the assertion is not a JWT")
		return
	}
	var header struct{ Alg string }
	var claims struct {
		Iss, Sub, Aud string
		Exp           int64
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &header) != nil || json.Unmarshal(cb, &claims) != nil {
		refuse("the assertion does not decode")
		return
	}
	digest := sha512.Sum384([]byte(parts[0] + "." + parts[1]))
	switch {
	case header.Alg != "RS384":
		refuse("alg must be RS384")
	case rsa.VerifyPKCS1v15(s.SMARTKey, crypto.SHA384, digest[:], sig) != nil:
		refuse("bad signature")
	case claims.Iss == "" || claims.Iss != claims.Sub:
		refuse("iss and sub must be the client id")
	case !strings.HasSuffix(claims.Aud, "/auth/token"):
		refuse("aud must be the token URL")
	case time.Unix(claims.Exp, 0).Before(time.Now()) || time.Unix(claims.Exp, 0).After(time.Now().Add(5*time.Minute)):
		refuse("exp must be within five minutes")
	default:
		life := s.TokenLifetime
		if life <= 0 {
			life = 300 * time.Second
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		tok := hex.EncodeToString(b[:])
		if s.tokens == nil {
			s.tokens = map[string]time.Time{}
		}
		s.tokens[tok] = time.Now().Add(life)
		s.grants++
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": int(life.Seconds()),
			"scope": r.PostForm.Get("scope")})
	}
}

// typeName reports whether a path segment is a resource type (Patient, not
// fhir or R4).
func typeName(s string) bool {
	if len(s) < 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'a' || s[1] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// history serves GET {Type}/_history?_since=T: the current versions and
// the deletes changed since T (one page; this server's histories are short).
func (s *Server) history(w http.ResponseWriter, r *http.Request, typ string) {
	since, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("_since"))
	entries := []map[string]any{}
	for _, res := range s.current {
		if res["resourceType"] == typ && lastUpdated(res).After(since) {
			entries = append(entries, map[string]any{"resource": res,
				"request":  map[string]any{"method": "PUT", "url": typ + "/" + res["id"].(string)},
				"response": map[string]any{"status": "200"}})
		}
	}
	for ref, d := range s.deleted {
		if strings.HasPrefix(ref, typ+"/") && d.at.After(since) {
			entries = append(entries, map[string]any{
				"request":  map[string]any{"method": "DELETE", "url": fmt.Sprintf("%s/_history/%d", ref, d.version)},
				"response": map[string]any{"status": "410 Gone", "etag": fmt.Sprintf(`W/"%d"`, d.version), "lastModified": d.at.UTC().Format(time.RFC3339Nano)}})
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "history", "entry": entries})
}

// bulk serves the Bulk Data endpoints; false when r is not one of them.
// It is called with s.mu held; a file download releases it while it
// writes.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request, parts []string) bool {
	last := parts[len(parts)-1]
	base := "http://" + r.Host + "/" + strings.Join(parts[:len(parts)-1], "/")
	switch {
	case last == "metadata":
		cs := map[string]any{"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
			"format": []string{"json"}, "rest": []any{map[string]any{"mode": "server"}}}
		if s.Bulk {
			cs["rest"] = []any{map[string]any{"mode": "server", "operation": []any{map[string]any{"name": "export",
				"definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}}}}
		}
		_ = json.NewEncoder(w).Encode(cs)
		return true
	case !s.Bulk:
		return false
	case last == "$export":
		if r.Header.Get("Prefer") != "respond-async" {
			w.WriteHeader(http.StatusBadRequest)
			return true
		}
		var since time.Time
		if v := r.URL.Query().Get("_since"); v != "" {
			since, _ = time.Parse(time.RFC3339Nano, v)
		}
		types := strings.Split(r.URL.Query().Get("_type"), ",")
		job := &export{at: time.Now().UTC(), files: map[string][][]byte{}}
		var refs []string
		for ref := range s.current {
			refs = append(refs, ref)
		}
		sort.Strings(refs)
		for _, ref := range refs {
			res := s.current[ref]
			typ := res["resourceType"].(string)
			if slices.Contains(types, typ) && (since.IsZero() || lastUpdated(res).After(since)) {
				b, _ := json.Marshal(res)
				job.files[typ] = append(job.files[typ], b)
			}
		}
		s.exports = append(s.exports, job)
		w.Header().Set("Content-Location", fmt.Sprintf("%s/bulkstatus/%d", strings.TrimSuffix(base, "/"), len(s.exports)))
		w.WriteHeader(http.StatusAccepted)
		return true
	case len(parts) >= 2 && parts[len(parts)-2] == "bulkstatus":
		n, _ := strconv.Atoi(last)
		if n < 1 || n > len(s.exports) || s.exports[n-1].gone {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		job := s.exports[n-1]
		if r.Method == http.MethodDelete {
			job.gone = true
			w.WriteHeader(http.StatusAccepted)
			return true
		}
		if job.polls < max(s.BulkPolls, 1) {
			job.polls++
			w.Header().Set("X-Progress", fmt.Sprintf("%d%% done", 50*job.polls/max(s.BulkPolls, 1)))
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusAccepted)
			return true
		}
		root := strings.TrimSuffix(base, "/bulkstatus")
		var out []map[string]any
		var types []string
		for typ := range job.files {
			types = append(types, typ)
		}
		sort.Strings(types)
		for _, typ := range types {
			out = append(out, map[string]any{"type": typ, "url": fmt.Sprintf("%s/bulkfile/%d/%s.ndjson", root, n, typ), "count": len(job.files[typ])})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"transactionTime": job.at.Format(time.RFC3339Nano), "request": r.URL.String(),
			"requiresAccessToken": true, "output": out, "error": []any{}})
		return true
	case len(parts) >= 3 && parts[len(parts)-3] == "bulkfile":
		n, _ := strconv.Atoi(parts[len(parts)-2])
		if n < 1 || n > len(s.exports) || s.exports[n-1].gone {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		lines := s.exports[n-1].files[strings.TrimSuffix(last, ".ndjson")]
		delay := s.BulkLineDelay
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		s.mu.Unlock()
		defer s.mu.Lock()
		for _, l := range lines {
			if delay > 0 {
				time.Sleep(delay)
			}
			// Not append(l, '\n'): that writes into l's spare capacity,
			// shared by concurrent downloads of the same file.
			if _, err := fmt.Fprintf(w, "%s\n", l); err != nil {
				return true
			}
		}
		return true
	}
	return false
}
