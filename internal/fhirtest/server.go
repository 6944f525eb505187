// Package fhirtest is a FHIR R4 search server for tests, in memory: what
// the Medplum router (the real peer) does not do — paging with link[next]
// — and what crash tests need — resources changing while a client reads
// them. It serves GET {base}/{Type}?_lastUpdated=gtT|geT&_count=N (sorted
// by lastUpdated) and GET {base}/{Type}/{id}.
package fhirtest

import (
	"encoding/json"
	"fmt"
	"net/http"
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

	mu       sync.Mutex
	current  map[string]map[string]any // Type/id → latest version
	versions map[string]int
	requests int
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
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/fhir+json")
	if len(parts) >= 2 && s.current[parts[len(parts)-2]+"/"+parts[len(parts)-1]] != nil {
		_ = json.NewEncoder(w).Encode(s.current[parts[len(parts)-2]+"/"+parts[len(parts)-1]])
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
