package mappings

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/hl7"

	"github.com/ehrbridge/ehrbridge/internal/problems"
)

// Segment lint: every HL7 path a mapping reads or writes must be in a
// segment some HL7 version (2.3 to 2.7.1, package hl7's definitions)
// defines, or in a Z segment the mapping declares (z_segments:), and its
// field number must be one the segment has. HL7 v2 chapter 2 reserves
// segment ids starting with Z for site-defined segments, so only those
// can be declared; their fields are not checked.

// zSegments reads `z_segments: [ZPD, ZVN]`.
func (l *loader) zSegments(n *yaml.Node) map[string]bool {
	out := map[string]bool{}
	for _, c := range seqOrOne(n) {
		s, ok := l.str(c, "z_segments")
		if !ok {
			continue
		}
		switch {
		case !segmentRe.MatchString(s) || s[0] != 'Z':
			l.addAt(c, "z_segments: %q is not a Z segment id (Z and two capital letters or digits, like ZPD); HL7 reserves ids starting with Z for a site's own segments", s)
		case out[s]:
			l.addAt(c, "z_segments: %s is listed twice", s)
		default:
			out[s] = true
		}
	}
	return out
}

func seqOrOne(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return []*yaml.Node{n}
}

// pathProblem says what is wrong with the segment or field of an HL7 path
// the mapping reads or writes, or "".
func (sc *scope) pathProblem(p hl7.Path) string {
	if msg := sc.segmentProblem(p.Segment); msg != "" {
		return fmt.Sprintf("%s: %s", p, msg)
	}
	if sc.zsegs[p.Segment] || !hl7.IsStandardSegment(p.Segment) {
		return "" // a site's segment (an undeclared one is warned about): its fields are its own
	}
	n := hl7.MaxFieldCount(p.Segment)
	if p.Field <= n {
		return ""
	}
	last := fmt.Sprintf("%s-%d", p.Segment, n)
	if s, ok := hl7.LookupSegment("", p.Segment); ok && len(s.Fields) == n {
		last += " (" + s.Fields[n-1].Name + ")"
	}
	return fmt.Sprintf("%s: no HL7 version (2.3 to 2.7.1) defines field %d of %s; its last field is %s", p, p.Field, p.Segment, last)
}

// segmentProblem says what is wrong with a segment id, or "".
func (sc *scope) segmentProblem(id string) string {
	if sc.zsegs[id] || hl7.IsStandardSegment(id) {
		return ""
	}
	if strings.HasPrefix(id, "Z") {
		// A warning, not an error: mappings that read a site's Z
		// segments were written before z_segments existed, and an
		// upgrade must not stop them (lint shows it; run logs it).
		sc.warnUndeclaredZ(id)
		return ""
	}
	msg := fmt.Sprintf("%s is not an HL7 segment (no version 2.3 to 2.7.1 defines it)", id)
	if dym := sc.didYouMeanSegment(id); dym != "" {
		msg += "; " + dym
	}
	return msg
}

// didYouMeanSegment names the standard and declared segment ids one edit
// (a changed, added or removed character, or two neighbours swapped) from
// id; for a Z id, the declared ones alone when there are such.
func (sc *scope) didYouMeanSegment(id string) string {
	var near []string
	for s := range sc.zsegs {
		if problems.EditDistance(id, s) == 1 {
			near = append(near, s)
		}
	}
	// A Z typo most likely means a declared Z segment.
	if len(near) == 0 || !strings.HasPrefix(id, "Z") {
		for _, s := range hl7.StandardSegmentIDs() {
			if problems.EditDistance(id, s) == 1 {
				near = append(near, s)
			}
		}
	}
	if len(near) == 0 {
		return ""
	}
	sort.Strings(near)
	if len(near) > 5 {
		near = near[:5]
	}
	if len(near) == 1 {
		return "did you mean " + near[0] + "?"
	}
	return "did you mean " + strings.Join(near[:len(near)-1], ", ") + " or " + near[len(near)-1] + "?"
}

// warnUndeclaredZ warns, once per mapping and segment, at the node being
// compiled, that the mapping reads Z segment id without declaring it.
func (sc *scope) warnUndeclaredZ(id string) {
	if sc.zWarned[id] || sc.at == nil {
		return
	}
	if sc.zWarned == nil {
		sc.zWarned = map[string]bool{}
	}
	sc.zWarned[id] = true
	msg := fmt.Sprintf("%s is a site-defined (Z) segment that this mapping does not declare: add z_segments: [%s] if the sender sends it", id, id)
	if dym := sc.didYouMeanSegment(id); dym != "" {
		msg += "; " + dym
	}
	sc.warnAt(sc.at, "%s", msg)
}
