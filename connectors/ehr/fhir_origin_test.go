package ehr

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// tokenLog records the requests a server saw and the Authorization they
// carried.
type tokenLog struct {
	mu    sync.Mutex
	paths []string
	auth  []string
}

func (l *tokenLog) note(r *http.Request) {
	l.mu.Lock()
	l.paths = append(l.paths, r.URL.Path)
	l.auth = append(l.auth, r.Header.Get("Authorization"))
	l.mu.Unlock()
}

// tokenOutside lists the paths not below base that were sent the token.
func (l *tokenLog) tokenOutside(base string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i, p := range l.paths {
		if l.auth[i] != "" && p != base && !strings.HasPrefix(p, base+"/") {
			out = append(out, p)
		}
	}
	return out
}

func (l *tokenLog) reset() {
	l.mu.Lock()
	l.paths, l.auth = nil, nil
	l.mu.Unlock()
}

func (l *tokenLog) calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.paths)
}

// sourceAt is a source on base with a fresh log.
func sourceAt(t *testing.T, base string) (*FHIRSource, *checkpoint.Log) {
	t.Helper()
	l, err := checkpoint.Open(filepath.Join(t.TempDir(), checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &FHIRSource{Cfg: FHIRSourceConfig{Name: "ehrfhir", Types: []string{"Patient"}, PageSize: 1, Overlap: configvalue.Duration(time.Second)},
		Client: &fhirhttp.Client{Base: base, Auth: fhirhttp.StaticToken("T0K")}, Log: l,
		Logger: slog.New(slog.DiscardHandler)}, l
}

func patientPage(id, next string) []byte {
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": []any{map[string]any{"resource": map[string]any{
		"resourceType": "Patient", "id": id, "meta": map[string]any{"versionId": "1", "lastUpdated": "2026-01-05T08:00:00Z"}}}}}
	if next != "" {
		b["link"] = []any{map[string]any{"relation": "next", "url": next}}
	}
	out, _ := json.Marshal(b)
	return out
}

// A search's link[next] is resolved against the base and must stay on its
// origin and path: the @host:port text that, concatenated after a base
// without a path, named another host; another host, port or scheme; a
// sibling path (/fhir-evil) and one outside the base. The token reaches
// none of them; a relative link on the base is followed.
func TestNextLinkStaysOnBase(t *testing.T) {
	var hostile tokenLog
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostile.note(r)
		w.Write(patientPage("stolen", ""))
	}))
	defer evil.Close()
	evilHost := strings.TrimPrefix(evil.URL, "http://")

	var home tokenLog
	var next string
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		home.note(r)
		if r.Header.Get("Authorization") != "Bearer T0K" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("page") == "2" {
			w.Write(patientPage("p2", ""))
			return
		}
		w.Write(patientPage("p1", next))
	}))
	defer ehr.Close()
	ehrHost := strings.TrimPrefix(ehr.URL, "http://")
	_, ehrPort, _ := strings.Cut(ehrHost, ":")

	for _, c := range []struct {
		name, base, next, problem string
	}{
		{"@host:port after a base without path", ehr.URL, "@" + evilHost + "/x", "not a URL"},
		{"@host:port after a base with a slash", ehr.URL + "/", "@" + evilHost + "/Patient?page=2", "not a URL"},
		{"another host", ehr.URL + "/fhir", "http://localhost:" + ehrPort + "/fhir/Patient?page=2", "another host"},
		{"another port", ehr.URL + "/fhir", evil.URL + "/fhir/Patient?page=2", "another port"},
		{"another scheme", ehr.URL + "/fhir", "https://" + ehrHost + "/fhir/Patient?page=2", "another scheme"},
		{"a network-path reference", ehr.URL + "/fhir", "//" + evilHost + "/fhir/Patient?page=2", "another port"},
		{"a sibling path", ehr.URL + "/fhir", ehr.URL + "/fhir-evil/Patient?page=2", "outside the base path"},
		{"a relative sibling path", ehr.URL + "/fhir", "/fhir-evil/Patient?page=2", "outside the base path"},
		{"dot segments", ehr.URL + "/fhir", ehr.URL + "/fhir/../admin/Patient?page=2", "outside the base path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			next = c.next
			home.reset()
			hostile.reset()
			s, _ := sourceAt(t, c.base)
			_, err := s.PollType(context.Background(), "Patient", time.Time{})
			if err == nil || !strings.Contains(err.Error(), "the server's next-page link") || !strings.Contains(err.Error(), c.problem) {
				t.Errorf("err %v, want the next-page link refused (%s)", err, c.problem)
			}
			if strings.Contains(fmt.Sprint(err), "page=2") {
				t.Errorf("the error quotes the link's query: %v", err)
			}
			if hostile.calls() != 0 {
				t.Errorf("the other server was called: %v with %v", hostile.paths, hostile.auth)
			}
			if bad := home.tokenOutside("/fhir"); c.base == ehr.URL+"/fhir" && len(bad) > 0 {
				t.Errorf("the token went outside /fhir: %v", bad)
			}
		})
	}

	t.Run("a relative link on the base", func(t *testing.T) {
		next = "Patient?page=2"
		s, _ := sourceAt(t, ehr.URL+"/fhir")
		st, err := s.PollType(context.Background(), "Patient", time.Time{})
		if err != nil || st.Pages != 2 || st.Added != 2 {
			t.Errorf("stats %+v err %v, want 2 pages and 2 patients", st, err)
		}
	})
}

// An id-only notification's fullUrl is read with the token: only on the
// base's origin and path. A relative one is read from the base.
func TestNotificationFullURLStaysOnBase(t *testing.T) {
	var home tokenLog
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		home.note(r)
		fmt.Fprintf(w, `{"resourceType":"Patient","id":%q,"meta":{"versionId":"1"}}`, filepath.Base(r.URL.Path))
	}))
	defer ehr.Close()
	var hostile tokenLog
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostile.note(r)
		w.Write([]byte(`{"resourceType":"Patient","id":"x"}`))
	}))
	defer evil.Close()
	s, l := sourceAt(t, ehr.URL+"/fhir")
	hook := httptest.NewServer(s.NotifyHandler("Authorization", "s3cret"))
	defer hook.Close()
	post := func(fullURL string) int {
		t.Helper()
		body := `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"fullUrl":"` + fullURL + `"}]}`
		req, _ := http.NewRequest(http.MethodPost, hook.URL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, u := range []string{
		ehr.URL + "/fhir-evil/Patient/x",
		ehr.URL + "/Patient/x",
		ehr.URL + "/fhir/../Patient/x",
		evil.URL + "/fhir/Patient/x",
		"//" + strings.TrimPrefix(evil.URL, "http://") + "/fhir/Patient/x",
		"@" + strings.TrimPrefix(evil.URL, "http://") + "/Patient/x",
		"urn:uuid:5c1d",
	} {
		if got := post(u); got != http.StatusBadRequest {
			t.Errorf("fullUrl %s: %d, want 400", u, got)
		}
	}
	if hostile.calls() != 0 {
		t.Errorf("the other server was called: %v", hostile.paths)
	}
	if bad := home.tokenOutside("/fhir"); len(bad) > 0 {
		t.Errorf("the token went outside /fhir: %v", bad)
	}
	if got := post("Patient/p5"); got != http.StatusOK {
		t.Errorf("a relative fullUrl: %d, want 200", got)
	}
	if st, _ := l.Stats(); st.States[checkpoint.Received] != 1 {
		t.Errorf("%d records, want 1", st.States[checkpoint.Received])
	}
}

// bulkFake is a Bulk Data server whose manifest and files a test sets.
type bulkFake struct {
	log      tokenLog
	status   string // Content-Location of the kick-off
	manifest func() map[string]any
	files    map[string]http.HandlerFunc
}

func (b *bulkFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.log.note(r)
	if r.Header.Get("Authorization") != "Bearer T0K" && b.files[r.URL.Path] == nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/$export"):
		w.Header().Set("Content-Location", b.status)
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/fhir/status" && r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(b.manifest())
	case b.files[r.URL.Path] != nil:
		b.files[r.URL.Path](w, r)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func ndjson(ids ...string) string {
	var sb strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&sb, `{"resourceType":"Patient","id":%q,"meta":{"versionId":"1"}}`+"\n", id)
	}
	return sb.String()
}

func manifestOf(token bool, urls ...string) func() map[string]any {
	return func() map[string]any {
		var out []any
		for _, u := range urls {
			out = append(out, map[string]any{"type": "Patient", "url": u})
		}
		return map[string]any{"transactionTime": "2026-01-05T08:00:00Z", "requiresAccessToken": token, "output": out}
	}
}

// Bulk Data: the status URL and, with requiresAccessToken true, the file
// URLs carry the token and must be on the base; with it false a file is
// read from anywhere (https, or loopback http in tests) without the token.
func TestBulkURLsKeepTheToken(t *testing.T) {
	var storage tokenLog
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storage.note(r)
		w.Write([]byte(ndjson("s1", "s2")))
	}))
	defer store.Close()

	t.Run("a status URL elsewhere", func(t *testing.T) {
		fake := &bulkFake{status: store.URL + "/fhir/status"}
		ehr := httptest.NewServer(fake)
		defer ehr.Close()
		s, _ := sourceAt(t, ehr.URL+"/fhir")
		_, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil)
		if err == nil || !strings.Contains(err.Error(), "status URL (Content-Location) is on another port") {
			t.Errorf("err %v, want the status URL refused", err)
		}
		if pending, _ := s.BulkPending(); pending {
			t.Error("a refused status URL was kept")
		}
		if storage.calls() != 0 {
			t.Errorf("the other server was polled: %v", storage.paths)
		}
	})

	t.Run("a file elsewhere with requiresAccessToken", func(t *testing.T) {
		fake := &bulkFake{status: "status", manifest: manifestOf(true, store.URL+"/fhir/Patient.ndjson")}
		ehr := httptest.NewServer(fake)
		defer ehr.Close()
		s, _ := sourceAt(t, ehr.URL+"/fhir")
		_, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil)
		if err == nil || !strings.Contains(err.Error(), "a bulk export file URL (requiresAccessToken is true) is on another port") {
			t.Errorf("err %v, want the file refused", err)
		}
		if storage.calls() != 0 {
			t.Errorf("the other server was called: %v", storage.paths)
		}
	})

	t.Run("a file elsewhere without requiresAccessToken", func(t *testing.T) {
		fake := &bulkFake{status: "status", manifest: manifestOf(false, store.URL+"/exports/Patient.ndjson")}
		ehr := httptest.NewServer(fake)
		defer ehr.Close()
		s, _ := sourceAt(t, ehr.URL+"/fhir")
		st, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil)
		if err != nil || st.Added != 2 {
			t.Fatalf("stats %+v err %v, want the 2 patients of the file", st, err)
		}
		if storage.calls() != 1 || storage.auth[0] != "" {
			t.Errorf("storage: %d calls, Authorization %q; want one call without the token", storage.calls(), storage.auth)
		}
	})

	t.Run("files on the origin", func(t *testing.T) {
		// The Bulk Data IG's manifest examples put files outside the FHIR
		// base path (https://example.org/output/...): the origin is enough.
		fake := &bulkFake{status: "status", files: map[string]http.HandlerFunc{}}
		ehr := httptest.NewServer(fake)
		defer ehr.Close()
		fake.manifest = manifestOf(true, ehr.URL+"/fhir/files/Patient.ndjson", "/output/Patient_2.ndjson")
		file := func(ids ...string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer T0K" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				w.Write([]byte(ndjson(ids...)))
			}
		}
		fake.files["/fhir/files/Patient.ndjson"], fake.files["/output/Patient_2.ndjson"] = file("p1"), file("p2")
		s, _ := sourceAt(t, ehr.URL+"/fhir")
		if st, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil); err != nil || st.Added != 2 {
			t.Errorf("stats %+v err %v", st, err)
		}
		if bad := fake.log.tokenOutside("/fhir"); len(bad) != 1 || bad[0] != "/output/Patient_2.ndjson" {
			t.Errorf("the token went outside /fhir to %v, want only the manifest's /output file", bad)
		}
	})

	t.Run("a stored status URL elsewhere", func(t *testing.T) {
		// Kept by an older version, which did not check it.
		storage.reset()
		fake := &bulkFake{status: "status"}
		ehr := httptest.NewServer(fake)
		defer ehr.Close()
		s, l := sourceAt(t, ehr.URL+"/fhir")
		if err := l.SetSourceState(s.bulkKey(), []byte(`{"status_url":"`+store.URL+`/fhir/status","types":["Patient"]}`)); err != nil {
			t.Fatal(err)
		}
		_, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil)
		if err == nil || !strings.Contains(err.Error(), "the stored export's status URL is on another port") {
			t.Errorf("err %v, want the stored status URL refused", err)
		}
		if storage.calls() != 0 || fake.log.calls() != 0 {
			t.Errorf("calls: storage %v, ehr %v", storage.paths, fake.log.paths)
		}
	})
}

// A line longer than bulk_max_line and a file larger than bulk_max_file
// once decompressed (a gzip bomb) stop the backfill with a permanent error
// naming the type and the bound; the lines before are stored, nothing is
// cut silently.
func TestBulkBounds(t *testing.T) {
	long := `{"resourceType":"Patient","id":"big","text":"` + strings.Repeat("x", 8<<10) + `"}` + "\n"
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zw.Write([]byte(ndjson("b1")))
	blank := bytes.Repeat([]byte("\n"), 1<<20)
	for range 8 { // 8 MiB of empty lines, a few KiB compressed
		zw.Write(blank)
	}
	zw.Close()
	for _, c := range []struct {
		name   string
		serve  http.HandlerFunc
		bound  string
		stored int64
	}{
		{"a long line", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(ndjson("a1", "a2") + long + ndjson("a3")))
		}, "a line is longer than the bound of 4096 bytes (sources.fhir[].bulk_max_line)", 2},
		{"a gzip bomb", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(bomb.Bytes())
		}, "the decompressed file is larger than the bound of 1048576 bytes (sources.fhir[].bulk_max_file)", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := &bulkFake{status: "status", files: map[string]http.HandlerFunc{"/fhir/files/Patient.ndjson": c.serve}}
			ehr := httptest.NewServer(fake)
			defer ehr.Close()
			fake.manifest = manifestOf(false, ehr.URL+"/fhir/files/Patient.ndjson")
			s, l := sourceAt(t, ehr.URL+"/fhir")
			s.Cfg.BulkMaxLine, s.Cfg.BulkMaxFile = 4<<10, 1<<20
			_, err := s.Bulk(context.Background(), []string{"Patient"}, time.Time{}, nil)
			var ce *connectors.Error
			if err == nil || !strings.Contains(err.Error(), "bulk export file of Patient: "+c.bound) ||
				!errors.As(err, &ce) || ce.Kind != connectors.Permanent {
				t.Fatalf("err %v, want a permanent error naming the type and %q", err, c.bound)
			}
			if st, _ := l.Stats(); st.States[checkpoint.Received] != c.stored {
				t.Errorf("%d records stored, want the %d before the bound", st.States[checkpoint.Received], c.stored)
			}
			if pending, _ := s.BulkPending(); !pending {
				t.Error("the export is no longer pending: the file was taken as done")
			}
		})
	}
}
