package connectors

import (
	"strings"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// Plan orders the ops of one Apply call by their references: an op that
// references a record another op of the call writes runs after it.
type Plan struct {
	// Level of each op: 0 when it references nothing written in this call,
	// else one more than the ops it references (bounded, in case of a
	// cycle). Ops of one level do not depend on each other.
	Level []int
	// Max is the highest level.
	Max     int
	writers map[recKey][]int
}

// recKey identifies the record an op writes.
type recKey struct{ object, field, key string }

func keyOfOp(op *Op) recKey {
	return recKey{strings.ToLower(op.Object), strings.ToLower(op.KeyField), strings.ToLower(op.Key)}
}

func keyOfRef(r *mappings.Reference) recKey {
	return recKey{strings.ToLower(r.Object), strings.ToLower(r.KeyField), strings.ToLower(r.Key)}
}

// NewPlan computes the levels of ops.
func NewPlan(ops []Op) *Plan {
	p := &Plan{Level: make([]int, len(ops)), writers: map[recKey][]int{}}
	for i := range ops {
		k := keyOfOp(&ops[i])
		p.writers[k] = append(p.writers[k], i)
	}
	for pass := 0; pass < 8; pass++ {
		changed := false
		for i := range ops {
			for _, f := range ops[i].Fields {
				if f.Value.Kind != mappings.Ref {
					continue
				}
				for _, j := range p.writers[keyOfRef(f.Value.Ref)] {
					if j != i && p.Level[j]+1 > p.Level[i] {
						p.Level[i], changed = p.Level[j]+1, true
					}
				}
			}
		}
		if !changed {
			break
		}
	}
	for _, l := range p.Level {
		p.Max = max(p.Max, l)
	}
	return p
}

// PropagateFailures gives an op whose referenced record failed in this
// call that record's error: a transient failure of the patient must not
// leave the encounter dead with "referenced record not found".
func (p *Plan) PropagateFailures(ops []Op, results []Result) {
	for lv := 1; lv <= p.Max; lv++ {
	next:
		for i := range ops {
			if p.Level[i] != lv || results[i].Err == nil {
				continue
			}
			for _, f := range ops[i].Fields {
				if f.Value.Kind != mappings.Ref {
					continue
				}
				for _, j := range p.writers[keyOfRef(f.Value.Ref)] {
					if results[j].Err != nil {
						results[i].Err = results[j].Err
						continue next
					}
				}
			}
		}
	}
}
