package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/config"
)

// A FHIR source whose subscription endpoint cannot bind fails the start
// after the admin endpoint bound its port: Start returns the error and
// the admin port (and the MLLP source's) is free again. The admin
// listener used to stay open until the process ended.
func TestFailedFHIRStartFreesAdminPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	adminAddr, mllpAddr := freePort(t), freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
sources:
  mllp:
    - name: ehr
      listen: %s
  fhir:
    - name: ehrfhir
      base_url: http://127.0.0.1:1/fhir
      types: [Patient]
      schedule: "@every 1h"
      subscription:
        listen: %s
        path: /notify
        secret_env: EHR_WORD
`, t.TempDir(), adminAddr, mllpAddr, taken.Addr()), func(k string) (string, bool) { return "a-shared-secret", k == "EHR_WORD" })
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		d.Shutdown(t.Context())
		t.Fatal("Start succeeded with the subscription endpoint's port taken")
	}
	if !strings.Contains(err.Error(), "sources.fhir ehrfhir subscription") {
		t.Fatalf("Start = %v, want the subscription endpoint's failure", err)
	}
	for what, addr := range map[string]string{"admin": adminAddr, "mllp source": mllpAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("the %s port is still bound after the failed start: %v", what, err)
			continue
		}
		l.Close()
	}
}

// A CRM side that cannot start (its embedded sandbox's port is taken)
// fails the start after the log opened and the admin endpoint bound: the
// admin port is free again and the log is closed (a second start opens
// it).
func TestFailedCRMStartFreesAdminPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	adminAddr, dir := freePort(t), t.TempDir()
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
crm:
  sandbox:
    embed: true
    listen: %s
`, dir, adminAddr, taken.Addr()), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		d.Shutdown(t.Context())
		t.Fatal("Start succeeded with the sandbox's port taken")
	}
	if !strings.HasPrefix(err.Error(), "crm: ") {
		t.Fatalf("Start = %v, want the CRM side's failure", err)
	}
	l, err := net.Listen("tcp", adminAddr)
	if err != nil {
		t.Fatalf("the admin port is still bound after the failed start: %v", err)
	}
	l.Close()
	cfg.CRM = nil
	d, err = Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("a second start (the log left open?): %v", err)
	}
	d.Shutdown(t.Context())
}

// fakeParts is a group of parts that record what was called; the part
// named failAt fails to start.
func fakeParts(failAt string, names ...string) (*runGroup, *[]string) {
	var calls []string
	g := &runGroup{}
	for _, n := range names {
		g.add(part{name: n,
			start: func() error {
				if n == failAt {
					calls = append(calls, "start-fails "+n)
					return errors.New(n + " cannot start")
				}
				calls = append(calls, "start "+n)
				return nil
			},
			run:  func() { calls = append(calls, "run "+n) },
			stop: func(context.Context) { calls = append(calls, "stop "+n) },
		})
	}
	return g, &calls
}

// Parts start in order, run (once all started) in order, and stop in
// reverse, once.
func TestRunGroupStartsInOrderStopsInReverse(t *testing.T) {
	g, calls := fakeParts("", "log", "admin", "crm", "intake")
	if err := g.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.run()
	g.stop(t.Context())
	g.stop(t.Context()) // a second stop stops nothing
	want := []string{"start log", "start admin", "start crm", "start intake", "run log", "run admin", "run crm", "run intake",
		"stop intake", "stop crm", "stop admin", "stop log"}
	if !reflect.DeepEqual(*calls, want) {
		t.Fatalf("calls = %q\nwant    %q", *calls, want)
	}
}

// A part that fails to start: the parts started before it are stopped in
// reverse, none runs, the failed one and those after it are not stopped,
// and its error is returned.
func TestRunGroupPartialStartCleansUp(t *testing.T) {
	g, calls := fakeParts("crm", "log", "admin", "crm", "intake")
	err := g.start(t.Context())
	if err == nil || err.Error() != "crm cannot start" {
		t.Fatalf("start = %v, want the crm part's error", err)
	}
	want := []string{"start log", "start admin", "start-fails crm", "stop admin", "stop log"}
	if !reflect.DeepEqual(*calls, want) {
		t.Fatalf("calls = %q\nwant    %q", *calls, want)
	}
	g.stop(t.Context()) // the daemon's Shutdown is never called then; if it were, nothing more stops
	if len(*calls) != len(want) {
		t.Fatalf("a stop after the failed start stopped again: %q", *calls)
	}
}

// The daemon's table: its reverse is the stop order exactly-once needs
// (intake closes, then the pipeline drains, then the loops and the admin
// endpoint end, the log closes last).
func TestDaemonPartsOrder(t *testing.T) {
	d, _ := startTestDaemon(t)
	defer d.Shutdown(t.Context())
	want := []string{"mappings", "checkpoint log", "admin endpoint", "background loops", "FHIR clients", "CRM side", "intake"}
	if got := d.group.names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("parts = %q, want %q", got, want)
	}
}
