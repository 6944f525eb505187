package ehr

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
)

// Notifications: an endpoint for FHIR subscriptions. It takes
//   - R4 rest-hook notifications with the full resource in the body (a
//     resource, or a Bundle of them),
//   - R4 rest-hook pings (an empty body): the source polls at once,
//   - R4B/R5-style subscription-notification Bundles, full-resource (the
//     resources are in the entries) or id-only (the entries' fullUrl are
//     read from the server);
// and answers 200 only once every resource is durable in the checkpoint
// log (5xx otherwise, so that the server sends it again).

// maxNotification bounds a notification's body.
const maxNotification = 32 << 20

// NotifyHandler is the notification endpoint. header names the header
// that carries the shared secret ("Authorization" expects "Bearer
// <secret>"); an empty secret accepts every request (for mutual TLS
// deployments, where the client certificate is the authentication).
func (s *FHIRSource) NotifyHandler(header, secret string) http.Handler {
	if header == "" {
		header = "Authorization"
	}
	want := secret
	if strings.EqualFold(header, "Authorization") {
		want = "Bearer " + secret
	}
	var refusals refusalLog
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer := func(status int, severity, text string) {
			switch {
			case status < 300:
				s.Counters.Notifications.Add(1)
			case status < 500:
				s.Counters.Refused.Add(1)
				// The refusal's reason and the sender's address (never
				// the body), at most once a minute: a misconfigured
				// Subscription shows in the log without flooding it.
				if n := refusals.note(); n > 0 && s.Logger != nil {
					s.Logger.Warn("subscription notification refused", "status", status, "reason", text,
						"remote", r.RemoteAddr, "refused_since_last_report", n)
				}
			default:
				s.Counters.NotificationsFailed.Add(1)
			}
			writeOutcome(w, status, severity, text)
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			answer(http.StatusMethodNotAllowed, "error", "POST notifications here")
			return
		}
		if secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(header)), []byte(want)) != 1 {
			answer(http.StatusUnauthorized, "error", "missing or wrong subscription secret")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNotification))
		if err != nil {
			answer(http.StatusRequestEntityTooLarge, "error", "the notification is too large or was cut short")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		if len(strings.TrimSpace(string(body))) == 0 {
			// A ping: read what changed now.
			st, err := s.Poll(ctx)
			if err != nil {
				s.Logger.Warn("a subscription ping's poll failed; the server will send it again", "err", err)
				answer(http.StatusServiceUnavailable, "error", "the changes could not be read yet; send the notification again")
				return
			}
			answer(http.StatusOK, "information", "stored")
			if st.Added > 0 {
				s.Logger.Info("FHIR resources received (subscription ping)", "added", st.Added)
			}
			return
		}
		heads, raws, deletes, status, msg := s.notificationResources(ctx, body)
		if status != 0 {
			answer(status, "error", msg)
			return
		}
		added, err := s.appendPage(ctx, heads, raws)
		for _, e := range deletes {
			if err != nil {
				break
			}
			t, id, ver := e.deletedRef()
			var ok bool
			if ok, err = s.appendDelete(ctx, t, id, ver); ok {
				added++
			}
		}
		if err != nil {
			s.Logger.Warn("storing a subscription notification failed; the server will send it again", "err", err)
			answer(http.StatusServiceUnavailable, "error", "the resources could not be stored; send the notification again")
			return
		}
		if added > 0 {
			if s.Appended != nil {
				s.Appended()
			}
			s.Logger.Info("FHIR resources received (subscription)", "added", added)
		}
		answer(http.StatusOK, "information", "stored")
	})
}

// notificationResources reads the resources a notification carries or
// names; a non-zero status is a refusal with its message.
func (s *FHIRSource) notificationResources(ctx context.Context, body []byte) ([]resourceHead, []json.RawMessage, []entry, int, string) {
	var top struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}
	if err := json.Unmarshal(body, &top); err != nil || top.ResourceType == "" {
		return nil, nil, nil, http.StatusBadRequest, "the body is not a FHIR resource"
	}
	var heads []resourceHead
	var raws []json.RawMessage
	var deletes []entry
	add := func(raw json.RawMessage) bool {
		var head resourceHead
		if json.Unmarshal(raw, &head) != nil || head.ResourceType == "" {
			return false
		}
		switch head.ResourceType {
		case "SubscriptionStatus", "Parameters", "Subscription", "OperationOutcome":
			return true // the notification's own status, not data: it needs no id
		}
		if head.ID == "" {
			return false
		}
		heads, raws = append(heads, head), append(raws, raw)
		return true
	}
	if top.ResourceType != "Bundle" {
		if !add(body) {
			return nil, nil, nil, http.StatusBadRequest, "the resource has no resourceType or id"
		}
		return heads, raws, deletes, 0, ""
	}
	for _, e := range top.Entry {
		switch {
		case e.deleted():
			deletes = append(deletes, e)
		case len(e.Resource) > 0:
			if !add(e.Resource) {
				return nil, nil, nil, http.StatusBadRequest, "an entry's resource has no resourceType or id"
			}
		case e.FullURL != "":
			// id-only: read the resource from the server.
			// Resolved against the base and held to its origin and path:
			// the token goes along.
			ref, err := s.Client.Resolve(e.FullURL, "a notification's fullUrl")
			if err != nil {
				var ue *fhirhttp.URLError
				if errors.As(err, &ue) {
					return nil, nil, nil, http.StatusBadRequest, "a notified reference (fullUrl) " + ue.Problem + "; only URLs on the FHIR server's base are read"
				}
				return nil, nil, nil, http.StatusBadRequest, "a notified reference (fullUrl) is not on the FHIR server's base"
			}
			status, b, err := s.Client.Do(ctx, http.MethodGet, ref, nil, nil)
			if err == nil && status == http.StatusGone {
				deletes = append(deletes, e) // deleted since it was notified
				continue
			}
			if err != nil || status != http.StatusOK {
				return nil, nil, nil, http.StatusServiceUnavailable, "a notified resource could not be read from the server; send the notification again"
			}
			if !add(b) {
				return nil, nil, nil, http.StatusBadGateway, "the server answered with no resource for a notified reference"
			}
		}
	}
	return heads, raws, deletes, 0, ""
}

// writeOutcome answers with an OperationOutcome.
func writeOutcome(w http.ResponseWriter, status int, severity, text string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]any{{"severity": severity, "code": map[bool]string{true: "informational", false: "processing"}[severity == "information"],
			"details": map[string]string{"text": text}}}})
}

// refusalLog lets one refusal a minute be logged, with how many there
// were since the last one logged.
type refusalLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int
}

// note counts a refusal and returns how many to report now (0: not now).
func (l *refusalLog) note() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.missed++
	if !l.last.IsZero() && time.Since(l.last) < time.Minute {
		return 0
	}
	n := l.missed
	l.last, l.missed = time.Now(), 0
	return n
}
