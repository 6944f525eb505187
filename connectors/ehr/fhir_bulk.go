package ehr

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
)

// Bulk Data: a backfill through the FHIR Bulk Data Access system-level
// $export, when the server offers it (CapabilityStatement), instead of
// paged search. The export is kicked off once; its status URL, its
// transactionTime and the files already loaded are kept in the log, so a
// backfill stopped at any moment (even by SIGKILL) resumes the same export
// and skips the files it finished (a file cut short is read again; the
// versions already stored are recognised). Once every file is stored, each
// type's search watermark becomes the export's transactionTime, so that
// tailing goes on from the moment the export described: no gap, and the
// overlap is deduplicated.

// bulkState is a backfill's export under way, as stored in the log.
type bulkState struct {
	StatusURL       string   `json:"status_url"`
	Types           []string `json:"types"`
	TransactionTime string   `json:"transaction_time,omitempty"`
	FilesDone       []string `json:"files_done,omitempty"`
}

// BulkStats counts a bulk backfill.
type BulkStats struct {
	Files, Resources, Added, Errors int
	TransactionTime                 time.Time
}

func (s *FHIRSource) bulkKey() checkpoint.StateKey { return checkpoint.FHIRBulkKey(s.Cfg.Name) }

// BulkAvailable reports whether the server's CapabilityStatement offers
// the system-level $export operation.
func (s *FHIRSource) BulkAvailable(ctx context.Context) (bool, error) {
	status, body, err := s.Client.Do(ctx, http.MethodGet, "/metadata", nil, nil)
	if err != nil {
		return false, err
	}
	if status != http.StatusOK {
		return false, nil
	}
	var cs struct {
		Rest []struct {
			Operation []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"operation"`
		} `json:"rest"`
	}
	if json.Unmarshal(body, &cs) != nil {
		return false, nil
	}
	for _, r := range cs.Rest {
		for _, op := range r.Operation {
			if op.Name == "export" || strings.Contains(op.Definition, "bulkdata/OperationDefinition/export") {
				return true, nil
			}
		}
	}
	return false, nil
}

// BulkPending reports whether an export started by an earlier backfill is
// still to be finished.
func (s *FHIRSource) BulkPending() (bool, error) {
	_, ok, err := s.Log.SourceState(s.bulkKey())
	return ok, err
}

// Bulk loads the types through $export (since, if not zero, is _since).
// status, when set, is told the export's progress while the server works.
func (s *FHIRSource) Bulk(ctx context.Context, types []string, since time.Time, status func(string)) (BulkStats, error) {
	var st BulkStats
	state, err := s.loadBulk()
	if err != nil {
		return st, err
	}
	if state == nil {
		if state, err = s.kickOff(ctx, types, since); err != nil {
			return st, err
		}
	}
	manifest, err := s.awaitExport(ctx, state, status)
	if err != nil {
		return st, err
	}
	tt, err := time.Parse(time.RFC3339Nano, manifest.TransactionTime)
	if err != nil {
		return st, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BULK_MANIFEST", Message: "the export manifest has no transactionTime"}
	}
	st.TransactionTime = tt
	st.Errors = len(manifest.Error)
	// Patients first (the configured order), then anything else.
	outputs := slices.Clone(manifest.Output)
	order := func(t string) int {
		if i := slices.Index(state.Types, t); i >= 0 {
			return i
		}
		return len(state.Types)
	}
	slices.SortStableFunc(outputs, func(a, b bulkOutput) int { return order(a.Type) - order(b.Type) })
	for _, out := range outputs {
		if slices.Contains(state.FilesDone, out.URL) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if s.Total != nil && out.Count > 0 {
			s.Total(out.Type, out.Count)
		}
		read, added, err := s.loadFile(ctx, out, manifest.RequiresAccessToken)
		st.Resources += read
		st.Added += added
		if err != nil {
			return st, err
		}
		st.Files++
		state.FilesDone = append(state.FilesDone, out.URL)
		if err := s.saveBulk(state); err != nil {
			return st, err
		}
	}
	// Every file is stored: tailing starts at the export's moment (all
	// types in one transaction).
	marks := map[checkpoint.StateKey][]byte{}
	for _, typ := range state.Types {
		wm, err := s.Watermark(typ)
		if err != nil {
			return st, err
		}
		if tt.After(wm) {
			marks[s.watermarkKey(typ)] = []byte(tt.UTC().Format(time.RFC3339Nano))
		}
	}
	if err := s.Log.SetSourceStates(marks); err != nil {
		return st, err
	}
	// The server may drop the files now; a failure here changes nothing.
	_, _, _ = s.Client.Do(ctx, http.MethodDelete, state.StatusURL, nil, nil)
	return st, s.clearBulk()
}

func (s *FHIRSource) loadBulk() (*bulkState, error) {
	b, ok, err := s.Log.SourceState(s.bulkKey())
	if err != nil || !ok {
		return nil, err
	}
	var st bulkState
	if err := json.Unmarshal(b, &st); err != nil || st.StatusURL == "" {
		return nil, errors.New("the stored bulk export state is unreadable")
	}
	// Kept by an older version, it was not checked: it is now.
	if st.StatusURL, err = s.Client.Resolve(st.StatusURL, "the stored export's status URL"); err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *FHIRSource) saveBulk(st *bulkState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.Log.SetSourceState(s.bulkKey(), b)
}

func (s *FHIRSource) clearBulk() error {
	return s.Log.DeleteSourceState(s.bulkKey())
}

// kickOff starts the export and stores its status URL before anything
// else, so that a crash after it resumes this export.
func (s *FHIRSource) kickOff(ctx context.Context, types []string, since time.Time) (*bulkState, error) {
	q := url.Values{"_type": {strings.Join(types, ",")}}
	if !since.IsZero() {
		q.Set("_since", since.UTC().Format(time.RFC3339Nano))
	}
	status, header, body, err := s.Client.DoHeader(ctx, http.MethodGet, "/$export?"+q.Encode(), nil, map[string]string{"Prefer": "respond-async"})
	if err != nil {
		return nil, err
	}
	loc := header.Get("Content-Location")
	if status != http.StatusAccepted || loc == "" {
		return nil, fhirhttp.StatusError("FHIR_BULK_KICKOFF", status, body)
	}
	// The status URL carries the token: resolved against the base and
	// held to its origin and path before it is kept.
	if loc, err = s.Client.Resolve(loc, "the export's status URL (Content-Location)"); err != nil {
		return nil, err
	}
	st := &bulkState{StatusURL: loc, Types: types}
	return st, s.saveBulk(st)
}

type bulkOutput struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

type bulkManifest struct {
	TransactionTime     string       `json:"transactionTime"`
	RequiresAccessToken bool         `json:"requiresAccessToken"`
	Output              []bulkOutput `json:"output"`
	Error               []bulkOutput `json:"error"`
}

// awaitExport polls the status URL until the manifest is ready.
func (s *FHIRSource) awaitExport(ctx context.Context, st *bulkState, progress func(string)) (*bulkManifest, error) {
	for {
		status, header, body, err := s.Client.DoHeader(ctx, http.MethodGet, st.StatusURL, nil, nil)
		switch {
		case err != nil:
			return nil, err
		case status == http.StatusOK:
			var m bulkManifest
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BULK_MANIFEST", Message: "the export manifest is not JSON"}
			}
			return &m, nil
		case status == http.StatusAccepted:
			if progress != nil {
				progress(strings.TrimSpace(header.Get("X-Progress")))
			}
			wait := time.Second
			if n, err := strconv.Atoi(header.Get("Retry-After")); err == nil && n >= 0 {
				wait = min(max(time.Duration(n)*time.Second, 100*time.Millisecond), time.Minute)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		case status == http.StatusNotFound || status == http.StatusGone:
			// The server dropped the export (expired): start afresh next time.
			_ = s.clearBulk()
			return nil, &connectors.Error{Kind: connectors.Transient, Code: "FHIR_BULK_EXPIRED", Status: status,
				Message: "the server no longer has the export; run the backfill again to start a new one"}
		default:
			return nil, fhirhttp.StatusError("FHIR_BULK_STATUS", status, body)
		}
	}
}

// bulkBatch is how many lines of a file are appended together, at most;
// bulkBatchBytes bounds the batch's size (lines may be large).
const (
	bulkBatch      = 500
	bulkBatchBytes = 32 << 20
)

// Default bounds of a Bulk Data file (FHIRSourceConfig.BulkMaxLine, BulkMaxFile).
const (
	DefaultBulkMaxLine = 16 << 20
	DefaultBulkMaxFile = 8 << 30
)

// fileURL is where an export file is read, and whether with the token:
// with it (the manifest's requiresAccessToken, "Token required to retrieve
// bulk data files", Bulk Data Access IG, BulkDataManifest) only on the
// base's exact origin (the IG's examples put files outside the FHIR base
// path, at https://example.org/output/...); without it from anywhere https.
func (s *FHIRSource) fileURL(out bulkOutput, token bool) (string, error) {
	if token {
		return s.Client.ResolveOrigin(out.URL, "a bulk export file URL (requiresAccessToken is true)")
	}
	return s.Client.ResolveAny(out.URL, "a bulk export file URL")
}

// errTooLarge is the error of a file over a bound: permanent (reading it
// again finds the same), naming the file's type and the bound, never its
// content.
func errTooLarge(typ, what, key string, bound int64) error {
	return fmt.Errorf("bulk export file of %s: %s the bound of %d bytes (sources.fhir[].%s): %w", typ, what, bound, key,
		&connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BULK_FILE_TOO_LARGE"})
}

// countingReader counts what it reads, refusing more than limit bytes.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

var errFileBound = errors.New("file bound reached")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		// One byte more tells a file of exactly the bound from a longer one.
		var b [1]byte
		n, err := c.r.Read(b[:])
		if n > 0 {
			return 0, errFileBound
		}
		return 0, err
	}
	if rest := c.limit - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// loadFile stores one NDJSON file's resources, a batch at a time. A line
// longer than Cfg.BulkMaxLine or a file larger than Cfg.BulkMaxFile once
// decompressed (the transport undoes a gzip Content-Encoding) fails the
// file with a clear error: never a crash, never a silent cut.
func (s *FHIRSource) loadFile(ctx context.Context, out bulkOutput, token bool) (read, added int, err error) {
	typ := out.Type
	if !fhirTypeOK(typ) {
		typ = "?" // the manifest's type is shown only when it is a type name
	}
	target, err := s.fileURL(out, token)
	if err != nil {
		return 0, 0, err
	}
	resp, err := s.Client.Open(ctx, target, map[string]string{"Accept": "application/fhir+ndjson"}, token)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fhirhttp.StatusError("FHIR_BULK_FILE", resp.StatusCode, nil)
	}
	maxLine, maxFile := int64(cmp.Or(s.Cfg.BulkMaxLine, DefaultBulkMaxLine)), int64(cmp.Or(s.Cfg.BulkMaxFile, DefaultBulkMaxFile))
	body := &countingReader{r: resp.Body, limit: maxFile}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, min(1<<20, maxLine)), int(maxLine))
	var heads []resourceHead
	var raws []json.RawMessage
	batchBytes := 0
	flush := func() error {
		n, err := s.appendPage(ctx, heads, raws)
		added += n
		if s.Progress != nil {
			s.Progress(out.Type, len(heads), n)
		}
		heads, raws, batchBytes = heads[:0], raws[:0], 0
		return err
	}
	skipped := 0
	defer func() {
		if skipped > 0 && s.Logger != nil {
			// A count only: the line itself may hold patient data.
			s.Logger.Warn("bulk export file had lines that are not FHIR resources; skipped", "type", typ, "lines", skipped)
		}
	}()
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var head resourceHead
		if json.Unmarshal(line, &head) != nil || head.ResourceType == "" || head.ID == "" {
			skipped++ // not a resource: an export never holds one; skip it rather than fail the whole file
			continue
		}
		read++
		heads, raws = append(heads, head), append(raws, json.RawMessage(bytes.Clone(line)))
		batchBytes += len(line)
		if len(heads) >= bulkBatch || batchBytes >= bulkBatchBytes {
			if err := flush(); err != nil {
				return read, added, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		// What was read before stays stored (the versions are recognised
		// when the file is read again).
		if ferr := flush(); ferr != nil {
			return read, added, ferr
		}
		switch {
		case errors.Is(err, bufio.ErrTooLong):
			return read, added, errTooLarge(typ, "a line is longer than", "bulk_max_line", maxLine)
		case errors.Is(err, errFileBound):
			return read, added, errTooLarge(typ, "the decompressed file is larger than", "bulk_max_file", maxFile)
		}
		return read, added, &connectors.Error{Kind: connectors.Transient, Code: "FHIR_BULK_FILE_CUT"}
	}
	if len(heads) > 0 {
		if err := flush(); err != nil {
			return read, added, err
		}
	}
	return read, added, nil
}
