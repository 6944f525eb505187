package configvalue

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the file as a Go duration string
// ("30s", "5m", "1h30m") or a whole number of days ("30d"). A unit is required: a bare "30" is ambiguous
// between seconds and milliseconds, so it is rejected.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// ErrNoUnit is returned for a bare number where a duration is expected.
var ErrNoUnit = errors.New("a unit is required")

// ParseDuration parses a Go duration string or a whole number of days
// ("30d") but, unlike time.ParseDuration, rejects bare numbers other than 0.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s != "0" && isBareNumber(s) {
		return 0, ErrNoUnit
	}
	// Retention periods read naturally in days ("30d"); Go durations
	// stop at hours.
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && strings.Trim(days, "0123456789") == "" {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100000 {
			return 0, errors.New("too many days")
		}
		return Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return Duration(d), nil
}

// isBareNumber reports whether s is a number without a unit.
func isBareNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s != "" && strings.Trim(s, "0123456789.") == ""
}

// ByteSize is a number of bytes written in the file either as a plain
// integer or with a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB
// (powers of 1024), as in "10MiB". Units are case-insensitive and may be
// separated from the number by a space.
type ByteSize int64

// Common sizes.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// byteUnits lists units from largest to smallest so String picks the
// largest exact one.
var byteUnits = []struct {
	name string
	size int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

// String formats b with the largest unit that divides it exactly, so
// messages echo sizes the way people write them.
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// ParseByteSize parses a plain byte count or an integer with a unit.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits == 0 {
		return 0, errors.New("not a size")
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil {
		return 0, errors.New("too large")
	}
	unit := strings.TrimSpace(s[digits:])
	mult := int64(-1)
	if unit == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.size
		}
	}
	if mult < 0 {
		return 0, errors.New("unknown unit")
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return ByteSize(n * mult), nil
}
