//go:build linux

package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

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

	mllpAddr, adminAddr := freePort(t), freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
sources:
  mllp:
    - name: ehr
      listen: %s
`, dir, adminAddr, mllpAddr), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	oldEvery := StorageCheckInterval
	StorageCheckInterval = 50 * time.Millisecond
	defer func() { StorageCheckInterval = oldEvery }()

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
	restore := func() {
		if !restored {
			restored = true
			_ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}
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
	if tok, err := logadmin.ReadToken(dir); err == nil {
		t.Fatalf("a token file %q was left although the daemon could not write it", tok)
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
