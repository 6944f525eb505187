package ehr

import (
	"sync/atomic"
	"time"
)

// FHIRCounters are a source's figures for /status and /metrics: counts and
// times only, never resource content. The last error is an error's text,
// which in this package never quotes a URL, a body or a resource.
type FHIRCounters struct {
	// Polls and PollsFailed count polls (scheduled, at start, or for a
	// subscription ping).
	Polls, PollsFailed atomic.Int64
	// Stored counts resource versions stored as new records; Repeats,
	// versions read again and recognised (the overlap window, a resent
	// notification); Deletes, deletes stored.
	Stored, Repeats, Deletes atomic.Int64
	// Notifications counts notifications answered 2xx; Refused, those
	// answered 4xx (secret, body); NotificationsFailed, 5xx (the server
	// sends them again).
	Notifications, Refused, NotificationsFailed atomic.Int64

	lastPoll, lastPollOK atomic.Int64 // unix nanoseconds
	lastErr              atomic.Pointer[string]
}

// LastPoll is when the last poll ended; zero before the first.
func (c *FHIRCounters) LastPoll() time.Time { return fromUnix(c.lastPoll.Load()) }

// LastPollOK is when a poll last read everything it was due to.
func (c *FHIRCounters) LastPollOK() time.Time { return fromUnix(c.lastPollOK.Load()) }

// LastError is the error of the last failed poll, "" once one succeeds.
func (c *FHIRCounters) LastError() string {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *FHIRCounters) pollEnded(err error) {
	now := time.Now().UnixNano()
	c.Polls.Add(1)
	c.lastPoll.Store(now)
	if err != nil {
		c.PollsFailed.Add(1)
		msg := err.Error()
		c.lastErr.Store(&msg)
		return
	}
	c.lastPollOK.Store(now)
	c.lastErr.Store(nil)
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
