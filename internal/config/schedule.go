package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSchedule parses a poll schedule (sources.fhir[].schedule,
// writeback.schedule) exactly as the daemon runs it: a five-field cron spec
// or a descriptor (@hourly, @every 30s), optionally after "TZ=<zone> " or
// "CRON_TZ=<zone> ".
//
// github.com/robfig/cron/v3 is no longer maintained and its parser panics on
// some input: "TZ=UTC" with no space after the zone slices out of range. So
// the time-zone prefix is checked here before cron sees it, the parser runs
// under recover (a panic becomes an error naming no value), and a schedule
// that is never due (February 30th) or an @every shorter than a second is
// refused. Lint and the daemon both parse through here.
func ParseSchedule(spec string) (sched cron.Schedule, err error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("the schedule is empty")
	}
	rest := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		eq := strings.Index(spec, "=")
		sp := strings.Index(spec, " ")
		if sp < 0 {
			return nil, errors.New("a time zone prefix must be followed by a space and a schedule, as in \"TZ=Europe/Paris 0 6 * * *\"")
		}
		zone := spec[eq+1 : sp]
		if zone == "" {
			return nil, errors.New("the time zone prefix names no zone")
		}
		if _, err := time.LoadLocation(zone); err != nil {
			return nil, fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Paris)", zone)
		}
		rest = strings.TrimSpace(spec[sp:])
		if rest == "" {
			return nil, errors.New("no schedule follows the time zone prefix")
		}
		if strings.HasPrefix(rest, "TZ=") || strings.HasPrefix(rest, "CRON_TZ=") {
			return nil, errors.New("more than one time zone prefix")
		}
	}
	if d, ok := strings.CutPrefix(rest, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("@every needs a duration like 30s or 5m: %w", err)
		}
		if dur < time.Second {
			return nil, errors.New("@every is shorter than a second")
		}
	}
	defer func() {
		if r := recover(); r != nil {
			// The unmaintained parser's own bug: report it as a
			// problem of this schedule, not a crash of lint or run.
			sched, err = nil, fmt.Errorf("the cron parser cannot read this schedule (it failed with a %T)", r)
		}
	}()
	sched, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, err
	}
	// cron gives up after five years without a match and returns the zero
	// time: such a schedule would never poll.
	if sched.Next(time.Now()).IsZero() {
		return nil, errors.New("the schedule is never due (no date matches it)")
	}
	return sched, nil
}
