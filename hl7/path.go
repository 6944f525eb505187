package hl7

import (
	"fmt"
	"strconv"
	"strings"
)

// Path addresses a value in a message. All indexes are 1-based; zero means
// "not given": SegmentRep and Rep then default to the first occurrence, and a
// zero Component or Subcomponent addresses the whole field or component.
type Path struct {
	Segment      string // segment id, e.g. "PID" or "ZPD"
	SegmentRep   int    // which occurrence of the segment: OBX[2]-5
	Field        int    // field number: PID-5
	Rep          int    // field repetition: PID-3[2]
	Component    int    // PID-5.1
	Subcomponent int    // PID-3.4.2
}

// ParsePath parses the path syntax described in the package documentation.
// Segment ids are case-insensitive.
func ParsePath(s string) (Path, error) {
	var p Path
	rest := s
	i := 0
	for i < len(rest) && isAlnum(rest[i]) {
		i++
	}
	if i != 3 {
		return p, pathError(s, "a path starts with a three-character segment id, like PID-5.1")
	}
	p.Segment = strings.ToUpper(rest[:3])
	if !validSegmentName(p.Segment) {
		return p, pathError(s, "segment id must be a letter followed by two letters or digits")
	}
	rest = rest[3:]
	var err error
	if strings.HasPrefix(rest, "[") {
		if p.SegmentRep, rest, err = bracket(rest); err != nil {
			return p, pathError(s, "segment occurrence: "+err.Error())
		}
	}
	if !strings.HasPrefix(rest, "-") {
		return p, pathError(s, "expected '-' and a field number after the segment id")
	}
	rest = rest[1:]
	if p.Field, rest, err = number(rest); err != nil {
		return p, pathError(s, "field number: "+err.Error())
	}
	if strings.HasPrefix(rest, "[") {
		if p.Rep, rest, err = bracket(rest); err != nil {
			return p, pathError(s, "repetition: "+err.Error())
		}
	}
	if strings.HasPrefix(rest, ".") {
		if p.Component, rest, err = number(rest[1:]); err != nil {
			return p, pathError(s, "component: "+err.Error())
		}
		if strings.HasPrefix(rest, ".") {
			if p.Subcomponent, rest, err = number(rest[1:]); err != nil {
				return p, pathError(s, "subcomponent: "+err.Error())
			}
		}
	}
	if rest != "" {
		return p, pathError(s, fmt.Sprintf("unexpected %q", rest))
	}
	if p.Segment == "MSH" && p.Field <= 2 && (p.Rep > 1 || p.Component > 0) {
		return p, pathError(s, "MSH-1 and MSH-2 hold the delimiters and have no repetitions or components")
	}
	return p, nil
}

// MustPath is ParsePath for paths written in code; it panics on a bad path.
func MustPath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String formats the path in its shortest canonical form.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString(p.Segment)
	if p.SegmentRep > 1 {
		fmt.Fprintf(&b, "[%d]", p.SegmentRep)
	}
	fmt.Fprintf(&b, "-%d", p.Field)
	if p.Rep > 1 {
		fmt.Fprintf(&b, "[%d]", p.Rep)
	}
	if p.Component > 0 {
		fmt.Fprintf(&b, ".%d", p.Component)
		if p.Subcomponent > 0 {
			fmt.Fprintf(&b, ".%d", p.Subcomponent)
		}
	}
	return b.String()
}

func pathError(path, msg string) error {
	return fmt.Errorf("hl7 path %q: %s", path, msg)
}

func bracket(s string) (int, string, error) {
	n, rest, err := number(s[1:])
	if err != nil {
		return 0, s, err
	}
	if !strings.HasPrefix(rest, "]") {
		return 0, s, fmt.Errorf("missing ']'")
	}
	return n, rest[1:], nil
}

// number reads a positive decimal integer (at most 5 digits).
func number(s string) (int, string, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, fmt.Errorf("expected a number")
	}
	if i > 5 {
		return 0, s, fmt.Errorf("number too large")
	}
	n, _ := strconv.Atoi(s[:i])
	if n < 1 {
		return 0, s, fmt.Errorf("numbers start at 1")
	}
	return n, s[i:], nil
}

func validSegmentName(s string) bool {
	if len(s) != 3 {
		return false
	}
	if s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < 3; i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
