package salesforce

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Sink applies mapped ops to Salesforce: upserts by external id through
// sObject Collections, updates and deletes by the id found for the key. It
// implements connectors.Sink.
type Sink struct {
	Client *Client
	// Now is the clock of the upgrade guard (legacyGuard); default
	// time.Now.
	Now func() time.Time

	legacy legacyGuard
}

var _ connectors.Sink = (*Sink)(nil)

// Probe asks Salesforce whether it answers (Client.Probe), for the
// pipeline's breaker.
func (s *Sink) Probe(ctx context.Context) error { return s.Client.Probe(ctx) }

// Apply writes ops in dependency order: an op that references a record
// another op of this call writes comes after it, and if that op failed,
// the referencing op reports the same error (a transient failure must not
// turn into a permanent "foreign key not found"). Upserts are grouped by
// object and key field into collection requests of up to 200 records,
// packed into Composite calls of up to 5 (Salesforce's limit on
// collection subrequests), in order; updates and deletes follow,
// by the ids found for their keys.
func (s *Sink) Apply(ctx context.Context, ops []connectors.Op) []connectors.Result {
	results := make([]connectors.Result, len(ops))
	plan := connectors.NewPlan(ops)
	level, maxLevel := plan.Level, plan.Max
	// Upserts, all levels, in one pass: their collection requests go
	// into Composite calls in level order, so referenced records are
	// written first, and several objects cost one API request.
	type group struct {
		object, action, keyField string
		idx                      []int
	}
	byName := map[string]*group{}
	var upserts, others []*group
	for lv := 0; lv <= maxLevel; lv++ {
		for i := range ops {
			if level[i] != lv {
				continue
			}
			name := fmt.Sprint(lv) + "\x00" + strings.ToLower(ops[i].Object) + "\x00" + ops[i].Action + "\x00" + strings.ToLower(ops[i].KeyField)
			g := byName[name]
			if g == nil {
				g = &group{object: ops[i].Object, action: ops[i].Action, keyField: ops[i].KeyField}
				byName[name] = g
				if ops[i].Action == mappings.Upsert {
					upserts = append(upserts, g)
				} else {
					others = append(others, g)
				}
			}
			g.idx = append(g.idx, i)
		}
	}
	// The upgrade guard: hold upserts that could duplicate records an
	// older release keyed only by SourceSystemIdentifier.
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	held := map[string]error{} // object, key field, key of a held op
	heldKey := func(object, field, key string) string {
		return strings.ToLower(object) + "\x00" + strings.ToLower(field) + "\x00" + key
	}
	for _, g := range upserts {
		guarded := false
		for _, i := range g.idx {
			guarded = guarded || writesLegacyKey(ops[i])
		}
		if !guarded {
			continue
		}
		if err := s.legacy.check(ctx, s.Client, g.object, g.keyField, now()); err != nil {
			for _, i := range g.idx {
				results[i] = connectors.Result{Err: err}
				held[heldKey(ops[i].Object, ops[i].KeyField, ops[i].Key)] = err
			}
		}
	}
	if len(held) > 0 {
		// What refers to a held record is held with it, not sent to
		// fail on a reference the org cannot resolve yet.
		kept := upserts[:0]
		for _, g := range upserts { // in level order
			var idx []int
			for _, i := range g.idx {
				if results[i].Err != nil {
					continue
				}
				var err error
				for _, f := range ops[i].Fields {
					if r := f.Value.Ref; f.Value.Kind == mappings.Ref && r != nil && held[heldKey(r.Object, r.KeyField, r.Key)] != nil {
						err = held[heldKey(r.Object, r.KeyField, r.Key)]
					}
				}
				if err != nil {
					results[i] = connectors.Result{Err: err}
					held[heldKey(ops[i].Object, ops[i].KeyField, ops[i].Key)] = err
					continue
				}
				idx = append(idx, i)
			}
			if len(idx) > 0 {
				g.idx = idx
				kept = append(kept, g)
			}
		}
		upserts = kept
	}
	if len(upserts) > 0 {
		groups := make([]UpsertGroup, len(upserts))
		for gi, g := range upserts {
			recs := make([]map[string]any, len(g.idx))
			for n, i := range g.idx {
				recs[n] = Fields(ops[i].Fields)
				recs[n][g.keyField] = ops[i].Key
			}
			groups[gi] = UpsertGroup{Object: g.object, KeyField: g.keyField, Records: recs}
		}
		res, err := s.Client.UpsertGroups(ctx, groups)
		for gi, g := range upserts {
			for n, i := range g.idx {
				results[i] = toResult(res[gi][n], err)
			}
		}
	}
	for _, g := range others {
		// An update or delete by a key field the guard found uncopied
		// records for would miss them: held as well.
		if err := s.legacy.known(g.object, g.keyField); err != nil {
			for _, i := range g.idx {
				results[i] = connectors.Result{Err: err}
			}
			continue
		}
		s.applyGroup(ctx, ops, g.object, g.action, g.keyField, g.idx, results)
	}
	plan.PropagateFailures(ops, results)
	return results
}

func (s *Sink) applyGroup(ctx context.Context, ops []connectors.Op, object, action, keyField string, idx []int, results []connectors.Result) {
	c := s.Client
	switch action {
	case mappings.Upsert:
		recs := make([]map[string]any, len(idx))
		for n, i := range idx {
			recs[n] = Fields(ops[i].Fields)
			recs[n][keyField] = ops[i].Key
		}
		res, err := c.Upsert(ctx, object, keyField, recs)
		for n, i := range idx {
			results[i] = toResult(res[n], err)
		}
	case mappings.Update, mappings.Delete:
		// Update never creates and delete tolerates absence: find the id
		// by the key first; no record is success with no id.
		var found []int
		var ids []string
		for _, i := range idx {
			id, err := c.FindID(ctx, object, keyField, ops[i].Key)
			switch {
			case err != nil:
				results[i] = connectors.Result{Err: err}
			case id == "":
				results[i] = connectors.Result{}
			default:
				found = append(found, i)
				ids = append(ids, id)
			}
		}
		if len(found) == 0 {
			return
		}
		var res []Result
		var err error
		if action == mappings.Delete {
			res, err = c.Delete(ctx, ids)
		} else {
			recs := make([]map[string]any, len(found))
			for n, i := range found {
				recs[n] = Fields(ops[i].Fields)
				recs[n]["Id"] = ids[n]
			}
			res, err = c.Update(ctx, object, recs)
		}
		for n, i := range found {
			results[i] = toResult(res[n], err)
		}
	default:
		for _, i := range idx {
			results[i] = connectors.Result{Err: &Error{Kind: Permanent, Code: "UNKNOWN_ACTION", Message: action}}
		}
	}
}

func toResult(r Result, err error) connectors.Result {
	if err != nil {
		return connectors.Result{Err: err}
	}
	return connectors.Result{ID: r.ID, Err: r.Err}
}
