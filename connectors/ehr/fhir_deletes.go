package ehr

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Deletes: what becomes of the CRM record of a resource the EHR deleted
// is the source's rule: DeletesIgnore (counted, nothing else) or
// DeletesApply, which appends a delete record that the pipeline turns into
// the on_delete ops of the mappings that wrote the resource (mark the CRM
// record inactive, or delete it).
//
// A search never returns a deleted resource, so with DeletesApply each
// poll also reads the type's history since the last poll
// (GET {Type}/_history?_since=...) for its delete entries; notifications
// carry deletes as entries with request.method DELETE, and an id-only
// notification whose resource answers 410 Gone is one too.

// Delete rules.
const (
	DeletesIgnore = "ignore"
	DeletesApply  = "inactivate"
)

// deletedRef is the Type/id a delete entry names, and its version tag.
func (e entry) deletedRef() (typ, id, version string) {
	ref := e.FullURL
	if e.Request != nil && e.Request.URL != "" {
		ref = e.Request.URL
	}
	if u, err := url.Parse(ref); err == nil {
		ref = u.Path
	}
	parts := strings.Split(strings.Trim(ref, "/"), "/")
	if i := slices.Index(parts, "_history"); i >= 0 {
		if i+1 < len(parts) {
			version = parts[i+1]
		}
		parts = parts[:i]
	}
	if len(parts) < 2 {
		return "", "", ""
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if e.Response != nil {
		if v := strings.Trim(strings.TrimPrefix(e.Response.Etag, "W/"), `"`); v != "" {
			version = v
		} else if version == "" && e.Response.LastModified != "" {
			version = e.Response.LastModified
		}
	}
	return typ, id, version
}

// appendDelete stores the delete of typ/id (when the rule applies them);
// it reports whether it was new.
func (s *FHIRSource) appendDelete(ctx context.Context, typ, id, version string) (bool, error) {
	if s.Cfg.Deletes != DeletesApply || !fhirTypeOK(typ) || id == "" {
		return false, nil
	}
	if version == "" {
		version = "gone"
	}
	versions := checkpoint.FHIRHistoryPrefix(s.Cfg.Name, typ, id)
	key := versions + "deleted-" + version
	// The delete follows the resource's own records in their lane (the
	// patient's), so that it is applied after every version stored before
	// it, even one still waiting; without such records (read before ehrbridge
	// kept them, or long gone) it gets a lane of its own.
	entry := checkpoint.Entry{Key: key, Source: s.Cfg.Name, Kind: checkpoint.KindFHIRDelete, Type: typ,
		Hash: sha256.Sum256([]byte(key)), Lane: typ + "/" + id, Ack: []byte("-")}
	lane, ok, err := s.Log.LaneOfPrefix(versions)
	switch {
	case err != nil:
		return false, err
	case ok:
		entry.LaneHash = &lane
	case typ == "Patient":
		entry.Lane = id
		if k, ok := s.patients.get("Patient/" + id); ok {
			entry.Lane = k
		}
	}
	entry.Payload, _ = json.Marshal(map[string]string{"resourceType": typ, "id": id})
	res, err := s.Log.Append(ctx, entry)
	if err != nil {
		return false, err
	}
	if res.Outcome != checkpoint.Appended {
		return false, nil
	}
	s.Counters.Deletes.Add(1)
	return true, nil
}

func fhirTypeOK(t string) bool {
	if len(t) < 2 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// deletesWatermarkKey is where a type's history watermark lives.
func (s *FHIRSource) deletesWatermarkKey(typ string) checkpoint.StateKey {
	return checkpoint.FHIRDeletesWatermarkKey(s.Cfg.Name, typ)
}

// PollDeletes reads a type's history since its deletes watermark for
// delete entries (nothing unless the rule is DeletesApply). The first
// poll only sets the watermark: deletes from before ehrbridge followed the
// server concern records it never wrote.
func (s *FHIRSource) PollDeletes(ctx context.Context, typ string) (FHIRStats, error) {
	var st FHIRStats
	if s.Cfg.Deletes != DeletesApply {
		return st, nil
	}
	start := time.Now().UTC()
	v, ok, err := s.Log.SourceState(s.deletesWatermarkKey(typ))
	if err != nil {
		return st, err
	}
	if !ok {
		return st, s.Log.SetSourceState(s.deletesWatermarkKey(typ), []byte(start.Add(-s.overlap()).Format(time.RFC3339Nano)))
	}
	since, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return st, fmt.Errorf("stored deletes watermark: %w", err)
	}
	q := url.Values{"_since": {since.Add(-s.overlap()).Format(time.RFC3339Nano)}, "_count": {fmt.Sprint(max(s.Cfg.PageSize, 1))}}
	next := "/" + typ + "/_history?" + q.Encode()
	for next != "" {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		page, err := s.page(ctx, next)
		if err != nil {
			return st, err
		}
		st.Pages++
		for _, e := range page.Entry {
			if !e.deleted() {
				continue
			}
			st.Deleted++
			t, id, ver := e.deletedRef()
			added, err := s.appendDelete(ctx, t, id, ver)
			if err != nil {
				return st, err
			}
			if added {
				st.Added++
			}
		}
		if next, err = s.nextLink(page); err != nil {
			return st, err
		}
	}
	// Everything up to the start of this read is stored.
	return st, s.Log.SetSourceState(s.deletesWatermarkKey(typ), []byte(start.Format(time.RFC3339Nano)))
}

func (s *FHIRSource) overlap() time.Duration {
	if s.Cfg.Overlap > 0 {
		return s.Cfg.Overlap.Std()
	}
	return time.Minute
}
