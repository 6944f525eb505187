//go:build linux

package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// Issue 27, deliverable 6: a full disk degrades, it does not stop. The
// daemon is killed (SIGKILL) with records in flight on a full disk and
// started again: before, it exited at start ("no space left on device")
// and senders met a refused connection. It must start, answer AE to what
// it cannot store, say why on /readyz, and once room frees, without a
// restart, store and deliver everything: nothing lost, nothing twice.

// TestFullDiskCrashRestartTmpfs fills a real file system: a small tmpfs
// the test mounts (root with mount rights; skipped otherwise, and
// TestFullDiskCrashRestartRlimit proves the same without). Room frees
// when the volume is grown.
func TestFullDiskCrashRestartTmpfs(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mountTmpfs(t, data, "1m", "TestFullDiskCrashRestartRlimit covers the behaviour without")
	fullDiskRun(t, dir, data, fullDiskTmpfs{dir: data})
}

// TestFullDiskCrashRestartRlimit refuses every file write of the restarted
// daemon with its RLIMIT_FSIZE soft limit at 0 (EFBIG, as a disk with no
// room at all), which needs no mount rights, and frees "room" by raising
// the limit of the running process (prlimit).
func TestFullDiskCrashRestartRlimit(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	fullDiskRun(t, dir, data, &fullDiskRlimit{})
}

// fullDisk makes the data directory refuse writes and frees it again.
type fullDisk interface {
	// fill is called with the daemon running, after the first messages
	// were stored; it returns whether the daemon itself must fill it
	// (the test then sends until AE).
	fill(t *testing.T) (bySending bool)
	// restart starts the killed daemon on the full disk.
	restart(t *testing.T, d *crashDaemon)
	free(t *testing.T, d *crashDaemon)
	// problem is what /readyz must name.
	problem() string
}

type fullDiskTmpfs struct{ dir string }

func (f fullDiskTmpfs) fill(*testing.T) bool { return true }
func (f fullDiskTmpfs) restart(t *testing.T, d *crashDaemon) {
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
}

func (f fullDiskTmpfs) free(t *testing.T, _ *crashDaemon) {
	if err := syscall.Mount("tmpfs", f.dir, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
		t.Fatalf("growing the tmpfs: %v", err)
	}
}
func (f fullDiskTmpfs) problem() string { return "the data directory's disk is full: " }

type fullDiskRlimit struct{}

func (f *fullDiskRlimit) fill(*testing.T) bool { return false }

// restart starts the daemon with RLIMIT_FSIZE 0 (inherited from this
// process, whose own limit is restored at once).
func (f *fullDiskRlimit) restart(t *testing.T, d *crashDaemon) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	lim := old
	lim.Cur = 0
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit RLIMIT_FSIZE: %v", err)
	}
	err := d.start()
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatalf("restoring RLIMIT_FSIZE: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fullDiskRlimit) free(t *testing.T, d *crashDaemon) {
	cmd, _ := d.current()
	lim := syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)}
	var old syscall.Rlimit
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &cur); err == nil {
		lim = cur
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(cmd.Process.Pid), syscall.RLIMIT_FSIZE,
		uintptr(unsafe.Pointer(&lim)), uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		t.Fatalf("prlimit on the daemon: %v", e)
	}
}
func (f *fullDiskRlimit) problem() string { return "the checkpoint log may not grow" }

func fullDiskRun(t *testing.T, dir, data string, disk fullDisk) {
	bin := ehrbridgeBinary(t)
	sandboxAddr, mllpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	sandbox := startSandboxProcess(t, bin, sandboxAddr, []string{"--listen", sandboxAddr, "--tls-listen", "off"})
	cfg := fullDiskConfig(t, data, adminAddr, sandboxAddr, mllpAddr, "    batch_size: 20\n")
	d := startCrashDaemon(t, bin, filepath.Join(dir, "ehrbridge.yaml"), cfg, adminAddr)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\ndaemon log (tail):\n%s", append(args, crashTail(d.logs.String(), 3000))...)
	}

	// The CRM hangs: what the pipeline claims stays in progress.
	fault(t, sandbox, `{"latency_ms":600000,"count":100000}`)
	accepted := map[int]bool{} // message number → answered AA
	var refused []int          // answered AE
	n := 0
	send := func(i int) string {
		t.Helper()
		code, err := fullDiskSend(mllpAddr, fullDiskMessage(i))
		if err != nil {
			fail("message %d: %v", i, err)
		}
		return code
	}
	for ; n < 40; n++ {
		if code := send(n); code != "AA" {
			fail("message %d answered %s before the disk was full", n, code)
		}
		accepted[n] = true
	}
	waitFor(t, 10*time.Second, "records in progress", func() bool { return fullDiskStates(adminAddr)["in_progress"] > 0 })
	if disk.fill(t) {
		// The daemon fills the disk itself: send until it answers AE.
		for ; len(refused) < 5; n++ {
			if n > 5000 {
				fail("the disk never filled")
			}
			switch code := send(n); code {
			case "AA":
				accepted[n] = true
			case "AE":
				refused = append(refused, n)
			default:
				fail("message %d answered %s", n, code)
			}
		}
		if code, body := fullDiskGet(t, "http://"+adminAddr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, disk.problem()) {
			fail("/readyz on a full disk: %d %q, want 503 naming %q", code, body, disk.problem())
		}
	}
	inflight := fullDiskStates(adminAddr)["in_progress"]
	if inflight == 0 {
		fail("no record in progress at the kill")
	}
	if err := d.kill(); err != nil {
		fail("kill: %v", err)
	}

	// Restarted on the full disk: it starts, serves, is not ready and
	// answers AE.
	disk.restart(t, d)
	var body string
	waitFor(t, 20*time.Second, "/readyz to answer", func() bool {
		_, exited := d.current()
		select {
		case <-exited:
			fail("the daemon exited at start on a full disk: %v", d.exitErr())
		default:
		}
		var code int
		code, body = fullDiskGet(t, "http://"+adminAddr+"/readyz")
		return code != 0
	})
	if !strings.HasPrefix(body, "not ready: "+disk.problem()) {
		fail("/readyz after the restart on a full disk = %q, want it to name %q", body, disk.problem())
	}
	for range 3 {
		if code := send(n); code != "AE" {
			fail("message %d on a full disk answered %s, want AE", n, code)
		}
		refused = append(refused, n)
		n++
	}
	var st struct {
		Storage struct {
			Writable bool   `json:"writable"`
			Problem  string `json:"problem"`
		} `json:"storage"`
	}
	if _, b := fullDiskGet(t, "http://"+adminAddr+"/status"); json.Unmarshal([]byte(b), &st) != nil || st.Storage.Writable {
		fail("/status storage on a full disk: %s", b)
	}
	if _, b := fullDiskGet(t, "http://"+adminAddr+"/metrics"); !strings.Contains(b, "\nehrbridge_storage_writable 0\n") {
		fail("/metrics on a full disk lacks ehrbridge_storage_writable 0")
	}

	// Room frees and the CRM recovers: ready again without a restart.
	clearFaults(t, sandbox)
	disk.free(t, d)
	waitFor(t, 10*time.Second, "/readyz ready after room was freed", func() bool {
		code, _ := fullDiskGet(t, "http://"+adminAddr+"/readyz")
		return code == http.StatusOK
	})
	// The senders resend what was refused: stored now.
	for _, i := range refused {
		if code := send(i); code != "AA" {
			fail("message %d resent after room was freed answered %s", i, code)
		}
		accepted[i] = true
	}
	// Everything accepted is delivered, once.
	waitFor(t, 30*time.Second, "every record delivered", func() bool {
		s := fullDiskStates(adminAddr)
		return s["done"] == int64(len(accepted)) && s["in_progress"]+s["retrying"]+s["received"]+s["dead"] == 0
	})
	keys := map[string]int{}
	for _, rec := range objects(sandboxAddr, "Account") {
		k, _ := rec["EHR_Patient_Key__c"].(string)
		keys[k]++
	}
	for i := range accepted {
		if c := keys[fmt.Sprintf("H|FD%05d", i)]; c != 1 {
			fail("message %d: %d accounts in the CRM, want 1", i, c)
		}
	}
	if len(keys) != len(accepted) {
		fail("%d accounts in the CRM for %d accepted messages", len(keys), len(accepted))
	}
	t.Logf("%d messages accepted (%d refused with AE while the disk was full, then resent), %d in flight at the kill; all delivered once",
		len(accepted), len(refused), inflight)
}

// fullDiskMessage is an ADT^A01 for patient FD<i>, with a note of
// incompressible text so that the log fills a small disk quickly.
func fullDiskMessage(i int) []byte {
	var junk strings.Builder
	x := uint32(i*2654435761 + 1)
	for range 3000 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		junk.WriteByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[x%52])
	}
	return fmt.Appendf(nil, "MSH|^~\\&|FDAPP|FDFAC|EHRBRIDGE|EHRBRIDGE|20260101120000||ADT^A01|FD%05d|P|2.5\r"+
		"EVN|A01|20260101120000\rPID|1||FD%05d^^^H^MR||DOE^JANE||19700101|F\rNTE|1||%s\r", i, i, junk.String())
}

// fullDiskSend sends one message on a fresh connection and returns MSA-1.
func fullDiskSend(addr string, msg []byte) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := mllp.WriteFrame(c, msg); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack, err := mllp.NewReader(c, 0).ReadFrame()
	if err != nil {
		return "", err
	}
	for seg := range bytes.SplitSeq(ack, []byte("\r")) {
		if f := bytes.Split(seg, []byte("|")); len(f) > 1 && string(f[0]) == "MSA" {
			return string(f[1]), nil
		}
	}
	return "", fmt.Errorf("no MSA in the answer %q", ack)
}

func fullDiskGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fullDiskStates reads the checkpoint states from /status.
func fullDiskStates(adminAddr string) map[string]int64 {
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct {
		Checkpoint struct {
			States map[string]int64 `json:"states"`
		} `json:"checkpoint"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.Checkpoint.States
}

func fault(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("sandbox fault: %s", resp.Status)
	}
}

func clearFaults(t *testing.T, base string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, base+"/sandbox/v1/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// fullDiskConfig is the daemon config of the full-disk runs: the MLLP
// source "ehr" into the sandbox running apart, with the Health Cloud
// mappings; pipeline adds lines under crm.pipeline.
func fullDiskConfig(t *testing.T, data, adminAddr, sandboxAddr, mllpAddr, pipeline string) string {
	return fmt.Sprintf(`data_dir: %s
log:
  format: text
  level: info
  output: stderr
admin:
  listen: %s
mappings:
  paths: [%s]
  timezone: UTC
crm:
  sandbox:
    embed: false
    listen: %s
  pipeline:
    linger: 50ms
%ssources:
  mllp:
    - name: ehr
      listen: %s
`, data, adminAddr, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), sandboxAddr, pipeline, mllpAddr)
}

// mountTmpfs makes dir a tmpfs of size (unmounted when the test ends), or
// skips the test, saying what covers it without, when mounting is not
// allowed (root with CAP_SYS_ADMIN is needed).
func mountTmpfs(t *testing.T, dir, size, without string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("this case needs mounting a tmpfs (root with CAP_SYS_ADMIN): %v; %s", err, without)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}
