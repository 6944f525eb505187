package mappings

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// stamp is a parsed HL7 DTM/TS or ISO 8601 date-time with its precision.
type stamp struct {
	t         time.Time
	precision int // number of leading digits given: 4 year, 6 month, 8 day, 10 hour, 12 minute, 14 second
	frac      int // fractional second digits given
	hasZone   bool
}

var errNotDateTime = errors.New("not a date/time")

// parseStamp reads an HL7 v2 date/time, YYYY[MM[DD[HH[MM[SS[.S...]]]]]]
// followed by an optional +/-ZZZZ offset, or the ISO 8601 forms FHIR uses
// (YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]). A
// value without an offset is placed in zone.
func parseStamp(s string, zone *time.Location) (stamp, error) {
	s = strings.TrimSpace(s)
	if len(s) >= 7 && s[4] == '-' {
		return parseISO(s, zone)
	}
	var st stamp
	body, off := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		body, off = s[:i], s[i:]
	}
	frac := ""
	if i := strings.IndexByte(body, '.'); i >= 0 {
		body, frac = body[:i], body[i+1:]
		if len(body) != 14 || frac == "" || len(frac) > 9 || !digits(frac) {
			return st, errNotDateTime
		}
	}
	if !digits(body) {
		return st, errNotDateTime
	}
	switch len(body) {
	case 4, 6, 8, 10, 12, 14:
	default:
		return st, errNotDateTime
	}
	num := func(i, n, def int) int {
		if len(body) < i+n {
			return def
		}
		v, _ := strconv.Atoi(body[i : i+n])
		return v
	}
	year, month, day := num(0, 4, 0), num(4, 2, 1), num(6, 2, 1)
	hour, minute, sec := num(8, 2, 0), num(10, 2, 0), num(12, 2, 0)
	nsec := 0
	if frac != "" {
		n, _ := strconv.Atoi((frac + "000000000")[:9])
		nsec = n
	}
	loc := zone
	if off != "" {
		l, err := parseOffset(off)
		if err != nil {
			return st, err
		}
		loc, st.hasZone = l, true
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Year() != year || int(t.Month()) != month || t.Day() != day || t.Hour() != hour || t.Minute() != minute || t.Second() != sec {
		return st, errNotDateTime
	}
	st.t, st.precision, st.frac = t, len(body), len(frac)
	return st, nil
}

// parseOffset reads an HL7 "+hhmm" / "-hhmm" or ISO "+hh:mm" offset.
func parseOffset(s string) (*time.Location, error) {
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	d := strings.ReplaceAll(s[1:], ":", "")
	if len(d) != 4 || !digits(d) {
		return nil, errNotDateTime
	}
	h, _ := strconv.Atoi(d[:2])
	m, _ := strconv.Atoi(d[2:])
	if h > 14 || m > 59 {
		return nil, errNotDateTime
	}
	secs := sign * (h*3600 + m*60)
	if secs == 0 {
		return time.UTC, nil
	}
	return time.FixedZone("", secs), nil
}

func parseISO(s string, zone *time.Location) (stamp, error) {
	var st stamp
	date, clock, hasT := strings.Cut(s, "T")
	parts := strings.Split(date, "-")
	if len(parts) > 3 || len(parts[0]) != 4 {
		return st, errNotDateTime
	}
	compact := strings.Join(parts, "")
	for _, p := range parts[1:] {
		if len(p) != 2 {
			return st, errNotDateTime
		}
	}
	if !hasT {
		return parseStamp(compact, zone)
	}
	if len(parts) != 3 {
		return st, errNotDateTime
	}
	off := ""
	switch {
	case strings.HasSuffix(clock, "Z"):
		clock, off = clock[:len(clock)-1], "+0000"
	default:
		if i := strings.LastIndexAny(clock, "+-"); i >= 0 {
			clock, off = clock[:i], clock[i:]
		}
	}
	hms, frac, _ := strings.Cut(clock, ".")
	fields := strings.Split(hms, ":")
	if len(fields) < 2 || len(fields) > 3 {
		return st, errNotDateTime
	}
	for _, f := range fields {
		if len(f) != 2 {
			return st, errNotDateTime
		}
	}
	hl7 := compact + strings.Join(fields, "")
	if frac != "" {
		if len(fields) != 3 {
			return st, errNotDateTime
		}
		hl7 += "." + frac
	}
	return parseStamp(hl7+off, zone)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isoDate renders the stamp's calendar date as written (no zone
// conversion: a birth date stays the date the EHR recorded).
func (st stamp) isoDate() string { return st.t.Format("2006-01-02") }

// isoDateTime renders the stamp as RFC 3339 with its offset; fractional
// seconds are kept to the millisecond when the source had them.
func (st stamp) isoDateTime() string {
	if st.frac > 0 {
		return st.t.Format("2006-01-02T15:04:05.000Z07:00")
	}
	return st.t.Format(time.RFC3339)
}
