package admin

import (
	"strings"
	"testing"
)

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pa55w0rd@ehr.example/fhir":            "https://[redacted]@ehr.example/fhir",
		"https://tok3n@ehr.example/fhir":                    "https://[redacted]@ehr.example/fhir",
		`Get "http://u:p%40ss@127.0.0.1:1/x": refused`:      `Get "http://[redacted]@127.0.0.1:1/x": refused`,
		"https://ehr.example/fhir?who=a@b":                  "https://ehr.example/fhir?who=a@b",
		"no url, mail@example.org":                          "no url, mail@example.org",
		"a https://a:b@h/x and HTTPS://c:d@h2 in one error": "a https://[redacted]@h/x and HTTPS://[redacted]@h2 in one error",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redactURL("https://user:pa55w0rd@ehr.example/fhir"); strings.Contains(got, "pa55w0rd") || strings.Contains(got, "user") {
		t.Errorf("redactURL = %q", got)
	}
}
