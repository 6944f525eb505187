//go:build linux

package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// The daemon starts on a data directory that takes no writes at all
// (RLIMIT_FSIZE 0: every file write fails, as on a disk with no room),
// with records left in progress by a crash and no admin token file yet:
// before issue 27 the log's opening, and then the token file, stopped the
// start. It serves, /readyz says why it is not ready, messages get AE, and
// once writes are possible again it resumes by itself (storageLoop).
func TestStartOnUnwritableDataDirResumes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, checkpoint.FileName)
	cp, err := checkpoint.Open(path, checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		key := fmt.Sprintf("k%d", i)
		if _, err := cp.Append(context.Background(), checkpoint.Entry{Key: key, Source: "s", Kind: "hl7v2", Type: "ADT^A01",
			Hash: sha256.Sum256([]byte(key)), Lane: key, Payload: []byte("x"), Ack: []byte("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if recs, err := cp.Claim(5); err != nil || len(recs) != 5 {
		t.Fatalf("claim: %d %v", len(recs), err)
	}
	cp.Close() // in progress stays in progress, as after a kill

	cfg, mllpAddr, adminAddr := storageTestConfig(t, dir)

	restore := setFSizeLimitZero(t)
	defer restore()
	d, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		restore()
		t.Fatalf("Start on a data directory that takes no writes: %v", err)
	}
	defer d.Shutdown(context.Background())
	code, body := get(t, "http://"+adminAddr+"/readyz")
	ack := exchange(t, mllpAddr, "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|C1|P|2.5\rPID|1||M1^^^H^MR||DOE^J\r")
	restore()
	const reason = "not ready: the checkpoint log may not grow"
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, reason) {
		t.Fatalf("/readyz = %d %q, want 503 %q", code, body, reason)
	}
	if !strings.Contains(ack, "MSA|AE|C1") {
		t.Fatalf("answer on a full disk = %q, want AE", ack)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get(t, "http://"+adminAddr+"/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 5 s after writes became possible: %s", d.storageProblem())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := d.cp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.States[checkpoint.InProgress] != 0 || st.States[checkpoint.Retrying] != 5 {
		t.Fatalf("after resuming: %v, want the 5 in progress at the crash retrying", st.States)
	}
	if ack := exchange(t, mllpAddr, "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|C1|P|2.5\rPID|1||M1^^^H^MR||DOE^J\r"); !strings.Contains(ack, "MSA|AA|C1") {
		t.Fatalf("resent after resuming: %q, want AA", ack)
	}
	// The token file could not be written: none is left that the CLI
	// would take for the daemon's.
	if _, err := os.Stat(filepath.Join(dir, logadmin.TokenFileName)); err == nil {
		t.Fatal("a token file was left although the daemon could not write it")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func exchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchangeOn(t, c, msg)
}

// The reason /readyz gives names the condition and, where the platform
// tells, the bytes free; never a record.
func TestDescribeStorage(t *testing.T) {
	dir := t.TempDir()
	if _, ok := freeBytes(dir); !ok {
		t.Fatal("statfs failed on Linux")
	}
	for _, tt := range []struct {
		kind checkpoint.StorageKind
		want string
	}{
		{checkpoint.StorageFull, "the data directory's disk is full: "},
		{checkpoint.StorageQuota, "the data directory's disk quota is used up: "},
		{checkpoint.StorageReadOnly, "the data directory's file system is read-only"},
		{checkpoint.StorageFileLimit, "the checkpoint log may not grow"},
	} {
		got := describeStorage(tt.kind, dir)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%v: %q, want it to begin %q", tt.kind, got, tt.want)
		}
		if (tt.kind == checkpoint.StorageFull || tt.kind == checkpoint.StorageQuota) && !strings.Contains(got, " bytes free") {
			t.Errorf("%v: %q does not say the bytes free", tt.kind, got)
		}
	}
}

// startDegraded starts the daemon on dataDir with a short storage check
// interval, while fault is in force (fault returns its undo, which is
// called before the daemon is probed), and returns the daemon, its MLLP
// and admin addresses and the undo.
func startDegraded(t *testing.T, dataDir string, fault func() (undo func())) (*Daemon, string, string, func()) {
	t.Helper()
	d, mllpAddr, adminAddr, undo := startDegradedNoStop(t, dataDir, fault)
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	return d, mllpAddr, adminAddr, undo
}

// startDegradedNoStop is startDegraded leaving the Shutdown to the test.
func startDegradedNoStop(t *testing.T, dataDir string, fault func() (undo func())) (*Daemon, string, string, func()) {
	t.Helper()
	cfg, mllpAddr, adminAddr := storageTestConfig(t, dataDir)
	undo := fault()
	d, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		undo()
		t.Fatalf("Start on a data directory that refuses the log's opening: %v", err)
	}
	return d, mllpAddr, adminAddr, undo
}

// degradedThenResumed checks a daemon started on a disk that keeps its log
// from opening: /readyz 503 with reason, AE on one connection; after the
// fault clears (undo, while the connection stays open) the same
// connection's next message gets AA, /readyz 200, and the record is in the
// log.
func degradedThenResumed(t *testing.T, d *Daemon, mllpAddr, adminAddr, reason string, undo func()) {
	t.Helper()
	c, err := net.Dial("tcp", mllpAddr)
	if err != nil {
		undo()
		t.Fatalf("the MLLP port refused a connection on a disk that keeps the log from opening: %v", err)
	}
	defer c.Close()
	code, body := get(t, "http://"+adminAddr+"/readyz")
	ack := exchangeOn(t, c, "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|C1|P|2.5\rPID|1||M1^^^H^MR||DOE^J\r")
	_, status := get(t, "http://"+adminAddr+"/status")
	undo()
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: "+reason) {
		t.Fatalf("/readyz = %d %q, want 503 naming %q", code, body, reason)
	}
	if !strings.Contains(ack, "MSA|AE|C1") || !strings.Contains(ack, "disk full or read-only") {
		t.Fatalf("answer while the log cannot open = %q, want AE saying why", ack)
	}
	var st struct {
		Storage struct {
			Writable bool   `json:"writable"`
			Problem  string `json:"problem"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Storage.Writable || !strings.HasPrefix(st.Storage.Problem, reason) {
		t.Fatalf("/status while the log cannot open lacks storage writable false: %s", status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get(t, "http://"+adminAddr+"/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 5 s after the fault cleared: %s", d.storageProblem())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ack := exchangeOn(t, c, "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|C1|P|2.5\rPID|1||M1^^^H^MR||DOE^J\r"); !strings.Contains(ack, "MSA|AA|C1") {
		t.Fatalf("resent on the same connection after the fault cleared: %q, want AA", ack)
	}
	cs, err := d.cp.Stats()
	if err != nil || cs.States[checkpoint.Received]+cs.States[checkpoint.InProgress]+cs.States[checkpoint.Done] != 1 {
		t.Fatalf("log after resuming: %+v %v, want the one record", cs, err)
	}
}

func exchangeOn(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if err := mllp.WriteFrame(c, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack, err := mllp.NewReader(c, 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return string(ack)
}

// A first start (no log file) on a disk that takes no writes
// (RLIMIT_FSIZE 0): before, checkpoint.Open failed to create the log and
// the daemon exited; senders met a refused connection.
func TestStartWithoutLogOnUnwritableDataDir(t *testing.T) {
	dir := t.TempDir()
	d, mllpAddr, adminAddr, undo := startDegraded(t, dir, func() func() { return setFSizeLimitZero(t) })
	degradedThenResumed(t, d, mllpAddr, adminAddr, "the checkpoint log may not grow", undo)
	if _, err := os.Stat(filepath.Join(dir, checkpoint.FileName)); err != nil {
		t.Fatal(err)
	}
}

// A data directory on a file system mounted read-only before the start,
// not created yet: before, the daemon exited (creating the directory, or
// the log). Needs mount rights (skipped otherwise).
func TestStartOnReadOnlyDataDir(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_RDONLY, "size=8m,mode=0700"); err != nil {
		t.Skipf("a read-only file system needs mounting a tmpfs (root with CAP_SYS_ADMIN): %v; TestStartWithoutLogOnUnwritableDataDir covers the behaviour without", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "data")
	d, mllpAddr, adminAddr, undo := startDegraded(t, dir, func() func() {
		return func() {
			if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "size=8m,mode=0700"); err != nil {
				t.Errorf("remounting read-write: %v", err)
			}
		}
	})
	degradedThenResumed(t, d, mllpAddr, adminAddr, "the data directory's file system is read-only", undo)
}

// While the log cannot be written the FHIR polls are skipped (what they
// found could not be stored: no request is spent on it), quietly; when it
// can again, storageLoop runs the skipped polls at once rather than at
// their next schedule (an hour here). Before, the poll at start ran on a
// full disk, spent its requests and failed, and the next ran an hour
// later.
func TestStorageProblemDefersFHIRPolls(t *testing.T) {
	// Without a log (it cannot be opened at all) and with one (open, its
	// writes refused: a poll would read its watermark and fetch pages).
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) { storageProblemDefersFHIRPolls(t, existing) })
	}
}

func storageProblemDefersFHIRPolls(t *testing.T, existing bool) {
	var requests atomic.Int64
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","entry":[]}`)
	}))
	defer fhir.Close()
	dir := t.TempDir()
	if existing {
		cp, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		cp.Close()
	}
	mllpAddr, adminAddr := freePort(t), freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
sources:
  mllp:
    - name: ehr
      listen: %s
  fhir:
    - name: ehrfhir
      base_url: %s
      types: [Patient]
      schedule: "@every 1h"
`, dir, adminAddr, mllpAddr, fhir.URL), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, logs, restore := startUnwritable(t, cfg)
	defer d.Shutdown(context.Background())
	time.Sleep(300 * time.Millisecond) // the poll at start, and a few storage checks
	n := requests.Load()
	restore()
	if n != 0 {
		t.Fatalf("%d FHIR requests while the log could not be written, want none", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for requests.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no FHIR poll within 5 s of the log taking writes (problem: %q)\n%s", d.storageProblem(), logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Quiet meanwhile: the problem's start and end are logged once each,
	// by the storage loop; no poll warned.
	out := logs.String()
	if c := strings.Count(out, "the checkpoint log cannot be written"); c != 1 {
		t.Errorf("storage problem logged %d times, want once:\n%s", c, out)
	}
	if strings.Contains(out, "polling the FHIR server failed") || strings.Contains(out, "retention failed") {
		t.Errorf("a poll or the sweep logged the storage problem again:\n%s", out)
	}
}

// setFSizeLimitZero sets this process's RLIMIT_FSIZE to 0 (every file
// write fails with EFBIG) and returns the undo, also run at cleanup.
func setFSizeLimitZero(t *testing.T) func() {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = 0
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	restored := false
	undo := func() {
		if !restored {
			restored = true
			_ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}
	t.Cleanup(undo)
	return undo
}

// While the log cannot be written the write-back's poll of the CRM for
// notes is skipped: the note versions it finds could not be stored, and
// each poll costs CRM API requests (a daily allocation). It resumes when
// the log takes writes. Before, it polled on every schedule and warned.
func TestStorageProblemSkipsWritebackPoll(t *testing.T) {
	dir := t.TempDir()
	cp, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cp.Close()
	mllpAddr, adminAddr, sbAddr := freePort(t), freePort(t), freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
mappings:
  paths: [%s]
  timezone: UTC
crm:
  sandbox:
    embed: true
    listen: %s
writeback:
  schedule: "@every 1s"
  target:
    mllp: %s
sources:
  mllp:
    - name: ehr
      listen: %s
`, dir, adminAddr, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), sbAddr, freePort(t), mllpAddr),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, logs, restore := startUnwritable(t, cfg)
	defer d.Shutdown(context.Background())
	queries := func() int64 {
		var st struct {
			ByEndpoint map[string]int64 `json:"by_endpoint"`
		}
		_, body := get(t, "http://"+d.SandboxAddr()+"/sandbox/v1/stats")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("sandbox stats: %v %q", err, body)
		}
		n := int64(0)
		for ep, c := range st.ByEndpoint {
			if strings.Contains(ep, "query") {
				n += c
			}
		}
		return n
	}
	time.Sleep(2500 * time.Millisecond) // two scheduled polls
	n := queries()
	restore()
	if n != 0 {
		t.Fatalf("%d CRM queries while the log could not be written, want none\n%s", n, logs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for queries() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no write-back poll within 5 s of the log taking writes (problem: %q)\n%s", d.storageProblem(), logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "polling the CRM for notes failed") {
		t.Errorf("the write-back poll logged the storage problem:\n%s", logs)
	}
}

// A daemon stopped before its log could open stops cleanly (the drain,
// the sweep, the storage loop and Close meet an unopened log).
func TestShutdownBeforeLogOpens(t *testing.T) {
	dir := t.TempDir()
	d, _, adminAddr, undo := startDegradedNoStop(t, dir, func() func() { return setFSizeLimitZero(t) })
	defer undo()
	if code, _ := get(t, "http://"+adminAddr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", code)
	}
	time.Sleep(150 * time.Millisecond) // a few storage checks
	done := make(chan struct{})
	go func() {
		d.Shutdown(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return with the log unopened")
	}
	undo()
	if _, err := os.Stat(filepath.Join(dir, checkpoint.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a log file exists after a stop before it could open: %v", err)
	}
}

// storageTestConfig is a daemon config with one MLLP source and the admin
// endpoint on free ports, storing in dataDir; the storage check runs every
// 50 ms until the test ends.
func storageTestConfig(t *testing.T, dataDir string) (cfg *config.Config, mllpAddr, adminAddr string) {
	t.Helper()
	mllpAddr, adminAddr = freePort(t), freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
sources:
  mllp:
    - name: ehr
      listen: %s
`, dataDir, adminAddr, mllpAddr), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	oldEvery := StorageCheckInterval
	StorageCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { StorageCheckInterval = oldEvery })
	return cfg, mllpAddr, adminAddr
}

// startUnwritable starts the daemon on cfg while no file may grow
// (RLIMIT_FSIZE 0, undone by restore), logging into logs, with the storage
// check every 50 ms until the test ends.
func startUnwritable(t *testing.T, cfg *config.Config) (d *Daemon, logs *syncbuf.Buffer, restore func()) {
	t.Helper()
	oldEvery := StorageCheckInterval
	StorageCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { StorageCheckInterval = oldEvery })
	logs = &syncbuf.Buffer{}
	restore = setFSizeLimitZero(t)
	d, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		restore()
		t.Fatalf("Start: %v", err)
	}
	return d, logs, restore
}
