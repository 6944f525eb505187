package hl7

import (
	"strconv"
	"strings"
)

// Walk calls fn for every populated leaf value of the message, in order,
// with a path that Message.Get accepts. Occurrence and repetition indexes
// appear in the path only where a segment occurs, or a field repeats, more
// than once ("OBX[2]-5", "PID-3[2].1"), so the paths are what an admin
// would write in a mapping. Walk stops when fn returns false.
func (m *Message) Walk(fn func(path string, v Value) bool) {
	seen := map[string]int{}
	d := &m.delims
	for _, s := range m.segments {
		id := s.fields[0]
		seen[id]++
		prefix := id
		if m.Count(id) > 1 {
			prefix += "[" + strconv.Itoa(seen[id]) + "]"
		}
		for f := 1; f <= s.NumFields(); f++ {
			raw := s.fields[f]
			if raw == "" {
				continue
			}
			fp := prefix + "-" + strconv.Itoa(f)
			if id == "MSH" && f <= 2 {
				if !fn(fp, s.Get(Path{Field: f})) {
					return
				}
				continue
			}
			reps := countByte(raw, d.Repetition) + 1
			if d.Repetition == 0 {
				reps = 1
			}
			for r := 1; r <= reps; r++ {
				rp := fp
				if reps > 1 {
					rp += "[" + strconv.Itoa(r) + "]"
				}
				if !walkRep(s, f, r, rp, fn) {
					return
				}
			}
		}
	}
}

func walkRep(s *Segment, f, r int, rp string, fn func(string, Value) bool) bool {
	d := &s.msg.delims
	rep := s.Get(Path{Field: f, Rep: r})
	if rep.IsEmpty() {
		return true
	}
	if rep.IsLeaf() {
		return fn(rp, rep)
	}
	comps := 1
	if d.Component != 0 {
		comps = strings.Count(rep.raw, string(d.Component)) + 1
	}
	for c := 1; c <= comps; c++ {
		cv := s.Get(Path{Field: f, Rep: r, Component: c})
		if cv.IsEmpty() {
			continue
		}
		cp := rp + "." + strconv.Itoa(c)
		if cv.IsLeaf() {
			if !fn(cp, cv) {
				return false
			}
			continue
		}
		subs := strings.Count(cv.raw, string(d.Subcomponent)) + 1
		for sc := 1; sc <= subs; sc++ {
			sv := s.Get(Path{Field: f, Rep: r, Component: c, Subcomponent: sc})
			if sv.IsEmpty() {
				continue
			}
			if !fn(cp+"."+strconv.Itoa(sc), sv) {
				return false
			}
		}
	}
	return true
}
