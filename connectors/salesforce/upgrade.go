package salesforce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// LegacyKeyField is the standard field releases before issue 26 upserted
// and referenced Account, ClinicalEncounter and HealthCondition by. It is
// idLookup, not an External ID; the shipped set now keys those objects by
// custom External ID fields (EHR_Patient_Key__c, ...) and still writes
// the same key to LegacyKeyField as a plain field.
const LegacyKeyField = "SourceSystemIdentifier"

// legacyRecheck is how long a found problem is trusted before the org is
// asked again (an admin may be running the copy).
const legacyRecheck = time.Minute

// legacyGuard keeps an upgraded ehrbridge from creating duplicate
// patients. An org an older release wrote holds records keyed only in
// SourceSystemIdentifier; their new key field is empty, so an upsert by
// it would not find them and would create a second Account for the same
// patient. Before the first upsert into an object by a key field other
// than SourceSystemIdentifier of ops that also write SourceSystemIdentifier
// (the shipped set's ops, and any mapping written the same way), the
// guard counts, once, the records with SourceSystemIdentifier but no key:
//
//	SELECT COUNT() FROM Account WHERE SourceSystemIdentifier != null AND EHR_Patient_Key__c = null
//
// None: it never asks again for that object and key field. Some: the
// upserts are held (a transient UNCOPIED_KEYS error: retried, never
// dead-lettered or written) until the one-time copy of
// configs/mappings/healthcloud/README.md ("Upgrading") is done.
type legacyGuard struct {
	mu    sync.Mutex
	clear map[string]bool         // object + key field: no uncopied record
	found map[string]legacyResult // object + key field: the last check that found some
}

type legacyResult struct {
	at  time.Time
	err *Error
}

// writesLegacyKey reports whether an upsert op through keyField also
// writes the legacy key field, as the shipped set's ops do.
func writesLegacyKey(op connectors.Op) bool {
	if strings.EqualFold(op.KeyField, LegacyKeyField) {
		return false
	}
	for _, f := range op.Fields {
		if strings.EqualFold(f.Name, LegacyKeyField) {
			return true
		}
	}
	return false
}

// check returns nil when the object holds no record keyed only by
// SourceSystemIdentifier, else the error to hold its upserts with.
func (g *legacyGuard) check(ctx context.Context, c *Client, object, keyField string, now time.Time) error {
	name := strings.ToLower(object) + "\x00" + strings.ToLower(keyField)
	g.mu.Lock()
	if g.clear[name] {
		g.mu.Unlock()
		return nil
	}
	if r, ok := g.found[name]; ok && now.Sub(r.at) < legacyRecheck {
		g.mu.Unlock()
		return r.err
	}
	g.mu.Unlock()
	if !validFieldName(object) || !validFieldName(keyField) {
		return nil // the upsert itself reports a bad name
	}
	n, err := c.UncopiedKeys(ctx, object, keyField)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if n == 0 {
		if g.clear == nil {
			g.clear = map[string]bool{}
		}
		g.clear[name] = true
		delete(g.found, name)
		return nil
	}
	e := &Error{Kind: Transient, Code: "UNCOPIED_KEYS", RetryAfter: legacyRecheck,
		Message: fmt.Sprintf("%d %s records have %s but no %s (written by an older ehrbridge): an upsert by %s would create duplicates; copy %s to %s once (configs/mappings/healthcloud/README.md, \"Upgrading\"), then they are written", n, object, LegacyKeyField, keyField, keyField, LegacyKeyField, keyField)}
	if g.found == nil {
		g.found = map[string]legacyResult{}
	}
	g.found[name] = legacyResult{at: now, err: e}
	return e
}

// UncopiedKeys counts the object's records an older release keyed only
// in LegacyKeyField: SourceSystemIdentifier set, keyField empty. A number,
// never a record. object and keyField must be API names.
func (c *Client) UncopiedKeys(ctx context.Context, object, keyField string) (int, error) {
	if !validFieldName(object) || !validFieldName(keyField) {
		return 0, fmt.Errorf("salesforce: %q.%q is not an API name", object, keyField)
	}
	return c.Count(ctx, fmt.Sprintf("SELECT COUNT() FROM %s WHERE %s != null AND %s = null", object, LegacyKeyField, keyField))
}

// known is the error of the last check that found uncopied records of the
// object and key field, nil if none did.
func (g *legacyGuard) known(object, keyField string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.found[strings.ToLower(object)+"\x00"+strings.ToLower(keyField)]; ok {
		return r.err
	}
	return nil
}

// validFieldName reports whether s is an API name (letters, digits,
// underscores), safe to put into a SOQL text.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
