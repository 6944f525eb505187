package admin

import (
	"net/url"
	"regexp"
)

// credentialsInURL matches the user information of a URL in text:
// scheme://user:password@ or scheme://token@.
var credentialsInURL = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s"'<>]+@`)

// redactURLs replaces the credentials of every URL in text with
// "[redacted]": a configured https://user:pass@host is never shown (on
// /status, the page, in errors).
func redactURLs(text string) string {
	return credentialsInURL.ReplaceAllString(text, "${1}[redacted]@")
}

// redactURL shows a configured URL without its user information.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redactURLs(raw)
	}
	if u.User != nil {
		u.User = url.User("[redacted]")
		return redactURLs(u.String())
	}
	return redactURLs(raw)
}
