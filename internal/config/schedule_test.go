package config

import (
	"strings"
	"testing"
)

// TestParseScheduleRefusesWithoutPanic holds the fence around robfig/cron:
// each bad schedule is an error (several of these panicked in cron's parser
// before), never a panic, and the good forms still parse.
func TestParseScheduleRefusesWithoutPanic(t *testing.T) {
	bad := map[string]string{
		"TZ=UTC":                         "followed by a space",
		"CRON_TZ=Europe/Paris":           "followed by a space",
		"TZ=UTC\t*/5 * * * *":            "unknown time zone",
		"TZ=x=y":                         "followed by a space",
		"TZ= * * * * *":                  "names no zone",
		"TZ=UTC ":                        "no schedule follows",
		"CRON_TZ=Nowhere/Land 0 6 * * *": "unknown time zone",
		"TZ=UTC TZ=UTC 0 6 * * *":        "more than one",
		"0 0 30 2 *":                     "never due",
		"@every -5s":                     "shorter than a second",
		"@every 10ms":                    "shorter than a second",
		"@every soon":                    "needs a duration",
		"":                               "empty",
		"   ":                            "empty",
		"every now and then":             "expected exactly 5 fields",
		"*/0 * * * *":                    "",
		"99 * * * *":                     "",
		"@yearly-ish":                    "",
	}
	for spec, want := range bad {
		t.Run(spec, func(t *testing.T) {
			_, err := ParseSchedule(spec)
			if err == nil {
				t.Fatalf("ParseSchedule(%q) succeeded, want an error", spec)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseSchedule(%q) = %q, want it to say %q", spec, err, want)
			}
		})
	}
	for _, spec := range []string{"@every 30s", "*/5 * * * *", "TZ=UTC */5 * * * *",
		"CRON_TZ=America/New_York 0 6 * * 1-5", "@hourly", "0 0 29 2 *"} {
		if _, err := ParseSchedule(spec); err != nil {
			t.Errorf("ParseSchedule(%q): %v", spec, err)
		}
	}
}
