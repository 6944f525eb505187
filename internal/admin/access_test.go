package admin_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/admin"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// The shared admin token of earlier releases is dropped: the daemon warns
// while the file is there (without its content) and does not accept it.
func TestLegacyAdminTokenIsNotAccepted(t *testing.T) {
	dir := t.TempDir()
	const legacy = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, logadmin.TokenFileName), []byte(legacy+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	cfg, err := config.Parse("t.yaml", []byte("data_dir: "+dir+"\nadmin:\n  listen: "+adminAddr+"\n  socket: \"off\"\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "shared admin token file is no longer read") ||
		strings.Contains(logs.String(), legacy) {
		t.Errorf("no warning about the legacy token file, or one that shows it:\n%s", logs)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/api/v1/log/records/1?reveal=1", nil)
	req.Header.Set("Authorization", "Bearer "+legacy)
	req.Header.Set("X-Forwarded-For", "192.0.2.7") // as through a proxy: no OS identity
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the legacy bearer token: status %d, want 401", resp.StatusCode)
	}
}

// A socket_group that does not exist stops the start with the reason,
// rather than leaving the group's members out silently.
func TestAdminSocketUnknownGroupFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "probe.sock")
	if runtime.GOOS == "windows" {
		path = fmt.Sprintf(`\\.\pipe\ehrbridge-probe-%d-%d`, os.Getpid(), time.Now().UnixNano())
	}
	probe, err := admin.ListenAdminSocket(path, "")
	if err != nil {
		t.Skipf("no admin socket here: %v", err)
	}
	probe.Close()
	dir := t.TempDir()
	cfg, err := config.Parse("t.yaml", []byte("data_dir: "+dir+"\nadmin:\n  listen: \"off\"\n  socket_group: no-such-group-zz\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		d.Shutdown(context.Background())
		t.Fatal("started with an unknown socket_group")
	}
	if !strings.Contains(err.Error(), "no-such-group-zz") {
		t.Errorf("error: %v", err)
	}
}

// seedRecord writes a log with one record whose payload holds a marker.
func seedRecord(t *testing.T, dataDir string) {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := checkpoint.Open(filepath.Join(dataDir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("MSH|^~\\&|A|F\rPID|1||ZZSOCKETPATIENT")
	if _, err := l.Append(context.Background(), checkpoint.Entry{Key: "ehr|A|F|1", Source: "ehr", Type: "ADT^A01", Lane: "L1", Payload: p, Ack: []byte("MSA|AA|1"), Hash: sha256.Sum256(p)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
}
