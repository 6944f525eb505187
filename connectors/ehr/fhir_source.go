package ehr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/logging"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// FHIRSource polls one FHIR server.
type FHIRSource struct {
	Cfg    FHIRSourceConfig
	Client *fhirhttp.Client
	Log    *checkpoint.Log
	// Mappings gives the lanes (a mapping's lane: expression), else the
	// patient a resource refers to orders its records.
	Mappings func() *mappings.Set
	// Appended is called after new versions were stored.
	Appended func()
	// Progress, when set, is told each page's counts (for backfill);
	// Total, the number of resources the server says a type has (a
	// search's Bundle.total, an export file's count).
	Progress func(typ string, seen, added int)
	Total    func(typ string, n int)
	Logger   *slog.Logger
	// Counters are the source's figures, for /status and /metrics.
	Counters FHIRCounters

	// patients caches the keys of the patients references name.
	patients patientCache
	// pollMu keeps polls one at a time (the schedule's and a
	// subscription ping's), so that a watermark never moves back.
	pollMu sync.Mutex
}

// FHIRStats of one poll.
type FHIRStats struct {
	Pages, Seen, Added, Deleted int
}

// watermarkKey is where a type's watermark lives in the log.
func (s *FHIRSource) watermarkKey(typ string) checkpoint.StateKey {
	return checkpoint.FHIRWatermarkKey(s.Cfg.Name, typ)
}

// Watermark returns the newest lastUpdated stored for a type (zero: none).
func (s *FHIRSource) Watermark(typ string) (time.Time, error) {
	v, ok, err := s.Log.SourceState(s.watermarkKey(typ))
	if err != nil || !ok {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, string(v))
}

// Poll follows every type once.
func (s *FHIRSource) Poll(ctx context.Context) (st FHIRStats, err error) {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	defer func() { s.Counters.pollEnded(err) }()
	return s.poll(ctx)
}

func (s *FHIRSource) poll(ctx context.Context) (FHIRStats, error) {
	var total FHIRStats
	for _, typ := range s.Cfg.Types {
		st, err := s.PollType(ctx, typ, time.Time{})
		total.Pages += st.Pages
		total.Seen += st.Seen
		total.Added += st.Added
		total.Deleted += st.Deleted
		if err != nil {
			return total, fmt.Errorf("%s: %w", typ, err)
		}
		dst, err := s.PollDeletes(ctx, typ)
		total.Pages += dst.Pages
		total.Added += dst.Added
		total.Deleted += dst.Deleted
		if dst.Added > 0 && s.Appended != nil {
			s.Appended()
		}
		if err != nil {
			return total, fmt.Errorf("%s history (deletes): %w", typ, err)
		}
	}
	return total, nil
}

// PollType reads what changed for one type since its watermark (less the
// overlap), or since since when there is no watermark (zero: everything),
// page by page until the last.
func (s *FHIRSource) PollType(ctx context.Context, typ string, since time.Time) (FHIRStats, error) {
	var st FHIRStats
	wm, err := s.Watermark(typ)
	if err != nil {
		return st, err
	}
	q := url.Values{"_sort": {"_lastUpdated"}, "_count": {fmt.Sprint(max(s.Cfg.PageSize, 1))}}
	from := since
	if !wm.IsZero() {
		from = wm.Add(-s.overlap())
	}
	if !from.IsZero() {
		q.Set("_lastUpdated", "gt"+from.UTC().Format(time.RFC3339Nano))
	}
	next := "/" + typ + "?" + q.Encode()
	pageStart := wm
	for next != "" {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		page, err := s.page(ctx, next)
		if err != nil {
			return st, err
		}
		st.Pages++
		if st.Pages == 1 && page.Total != nil && s.Total != nil {
			s.Total(typ, *page.Total)
		}
		newest := wm
		var heads []resourceHead
		var raws []json.RawMessage
		for _, e := range page.Entry {
			if e.deleted() {
				st.Deleted++ // a search shows none; PollDeletes reads them from the history
				continue
			}
			var head resourceHead
			if json.Unmarshal(e.Resource, &head) != nil || head.ResourceType == "" || head.ID == "" {
				continue // an OperationOutcome or a malformed entry
			}
			heads, raws = append(heads, head), append(raws, e.Resource)
			if t, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated); err == nil && t.After(newest) {
				newest = t
			}
		}
		st.Seen += len(heads)
		added, err := s.appendPage(ctx, heads, raws)
		if err != nil {
			return st, err
		}
		st.Added += added
		// The page's records are durable: now the watermark may pass them.
		if newest.After(wm) {
			if err := s.Log.SetSourceState(s.watermarkKey(typ), []byte(newest.UTC().Format(time.RFC3339Nano))); err != nil {
				return st, err
			}
			wm = newest
		}
		if added > 0 && s.Appended != nil {
			s.Appended()
		}
		if s.Progress != nil {
			s.Progress(typ, len(page.Entry), added)
		}
		if next, err = s.nextLink(page); err != nil {
			return st, err
		}
		if next == "" && len(page.Entry) >= max(s.Cfg.PageSize, 1) && newest.After(pageStart) {
			// A full page and no link[next]: a server that does not page.
			// Go on from the newest change seen (ge: ties at that instant
			// are read again, and the log recognises them).
			q.Set("_lastUpdated", "ge"+newest.UTC().Format(time.RFC3339Nano))
			next = "/" + typ + "?" + q.Encode()
		}
		pageStart = newest
	}
	return st, nil
}

// bundle is a searchset or history page.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []entry `json:"entry"`
}

type entry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response *struct {
		Status       string `json:"status"`
		Etag         string `json:"etag"`
		LastModified string `json:"lastModified"`
	} `json:"response"`
}

// deleted reports a history entry of a delete (DELETE, or 410 Gone).
func (e entry) deleted() bool {
	return e.Request != nil && strings.EqualFold(e.Request.Method, "DELETE") ||
		e.Response != nil && strings.HasPrefix(e.Response.Status, "410")
}

func (b *bundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// nextLink is the page's link[next] resolved against the base and held
// to its origin and path (the token goes along), "" when there is none.
func (s *FHIRSource) nextLink(b *bundle) (string, error) {
	next := b.next()
	if next == "" {
		return "", nil
	}
	return s.Client.Resolve(next, "the server's next-page link")
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Subject *reference `json:"subject"`
	Patient *reference `json:"patient"`
}

type reference struct {
	Reference string `json:"reference"`
}

func (s *FHIRSource) page(ctx context.Context, path string) (*bundle, error) {
	status, body, err := s.Client.Do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fhirhttp.StatusError("FHIR_HTTP", status, body)
	}
	var b bundle
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "FHIR_NOT_A_BUNDLE"}
	}
	return &b, nil
}

// appendPage stores a page's resource versions together: the appends
// share fsyncs (group commit) instead of waiting for one each. It returns
// how many were new; all are durable when it returns without error.
func (s *FHIRSource) appendPage(ctx context.Context, heads []resourceHead, raws []json.RawMessage) (int, error) {
	type result struct {
		added bool
		err   error
	}
	results := make([]result, len(heads))
	var wg sync.WaitGroup
	var caught atomic.Pointer[logging.WorkerPanic]
	for i := range heads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer logging.CatchWorkerPanic(&caught) // raised below, for the poll's recovery
			results[i].added, results[i].err = s.append(ctx, heads[i], raws[i])
		}()
	}
	wg.Wait()
	if p := caught.Load(); p != nil {
		panic(p)
	}
	added := 0
	for _, r := range results {
		if r.err != nil {
			return added, r.err
		}
		if r.added {
			added++
		}
	}
	return added, nil
}

// append stores one resource version; it reports whether it was new.
func (s *FHIRSource) append(ctx context.Context, head resourceHead, raw json.RawMessage) (bool, error) {
	version := head.Meta.VersionID
	if version == "" {
		version = head.Meta.LastUpdated // a server without versions: the change time tells them apart
	}
	if version == "" {
		// Neither (a pushed resource stripped of meta): the content does.
		h := sha256.Sum256(raw)
		version = "sha256-" + hex.EncodeToString(h[:12])
	}
	key := checkpoint.FHIRRecordKey(s.Cfg.Name, head.ResourceType, head.ID, version)
	res, err := s.Log.Append(ctx, checkpoint.Entry{Key: key, Source: s.Cfg.Name, Kind: checkpoint.KindFHIR, Type: head.ResourceType,
		// The version is the identity: a server that serialises the same
		// version differently later is not sending new content.
		Hash: sha256.Sum256([]byte(key)), Lane: s.lane(head, raw), Payload: raw, Ack: []byte("-")})
	if err != nil {
		return false, err
	}
	if res.Outcome == checkpoint.Appended {
		s.Counters.Stored.Add(1)
		return true, nil
	}
	s.Counters.Repeats.Add(1)
	return false, nil
}

// lane orders one patient's resources: the mappings' lane for the
// resource (with patient references resolved), else the patient it is or
// refers to. A reference that cannot be resolved now gives the reference
// as the lane; the record still waits for it when it is mapped.
func (s *FHIRSource) lane(head resourceHead, raw json.RawMessage) string {
	if head.ResourceType == "Patient" {
		// The patient's key orders its records, and is remembered for the
		// references to it that follow.
		key := s.patientKeyOf(head, raw)
		s.patients.put("Patient/"+head.ID, key)
		return key
	}
	if s.Mappings != nil {
		if set := s.Mappings(); set != nil {
			if l, err := set.Lane(mappings.Input{FHIR: raw, Patients: s}); err == nil && l != "" {
				return l
			}
		}
	}
	for _, r := range []*reference{head.Subject, head.Patient} {
		if r == nil {
			continue
		}
		if p := PatientRef(r.Reference); p != "" {
			if k, err := s.PatientKey(p); err == nil && k != "" {
				return k
			}
			return p
		}
	}
	return head.ResourceType + "/" + head.ID
}

// PatientRef normalises a reference to a patient ("Patient/123",
// "https://ehr/fhir/Patient/123/_history/2", "urn:uuid:...") to
// "Patient/<id>", or "" when it names no patient.
func PatientRef(ref string) string {
	if id, ok := strings.CutPrefix(ref, "urn:uuid:"); ok {
		return "Patient/" + id
	}
	i := strings.LastIndex(ref, "Patient/")
	if i < 0 {
		return ""
	}
	id, _, _ := strings.Cut(ref[i+len("Patient/"):], "/")
	if id == "" {
		return ""
	}
	return "Patient/" + id
}
