//go:build linux

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// Issue 27, deliverable 6, the start-ups that still exited: a first start
// with no log file on a full disk, a log an upgrade must migrate on a full
// disk, and a data directory mounted read-only before the start. Each must
// start, bind its listeners, answer AE (never AA, never a refused
// connection), say why on /readyz and /status, and once the disk takes
// writes, without a restart, open the log (create / migrate / recover) and
// serve: the same connection's next message gets AA and reaches the CRM.

// startFault makes the data directory refuse writes before the start and
// frees it again.
type startFault struct {
	arm     func(t *testing.T)                 // before the start
	start   func(t *testing.T, d *crashDaemon) // starts the daemon with the fault in force
	free    func(t *testing.T, d *crashDaemon)
	problem string // what /readyz must name
}

func startPlain(t *testing.T, d *crashDaemon) {
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
}

func TestFullDiskFirstStart(t *testing.T) {
	rlimit := &fullDiskRlimit{}
	rlimitFault := startFault{arm: func(*testing.T) {}, start: rlimit.restart, free: rlimit.free, problem: "the checkpoint log may not grow"}

	t.Run("TmpfsFullNoLog", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		firstStartRun(t, dir, data, 0, startFault{
			arm: func(t *testing.T) {
				mountTmpfs(t, data, "256k", "the Rlimit cases cover the behaviour without")
				startFill(t, data)
			},
			start: startPlain,
			free: func(t *testing.T, _ *crashDaemon) {
				if err := syscall.Mount("tmpfs", data, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
					t.Fatalf("growing the tmpfs: %v", err)
				}
			},
			problem: "the data directory's disk is full: ",
		})
	})
	t.Run("ReadOnlyNoDataDir", func(t *testing.T) {
		dir := t.TempDir()
		mnt := filepath.Join(dir, "mnt")
		data := filepath.Join(mnt, "data")
		firstStartRun(t, dir, data, 0, startFault{
			arm: func(t *testing.T) {
				if err := os.Mkdir(mnt, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_RDONLY, "size=16m,mode=0700"); err != nil {
					t.Skipf("a read-only file system needs mounting a tmpfs (root with CAP_SYS_ADMIN): %v", err)
				}
				t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
			},
			start: startPlain,
			free: func(t *testing.T, _ *crashDaemon) {
				if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
					t.Fatalf("remounting read-write: %v", err)
				}
			},
			problem: "the data directory's file system is read-only",
		})
	})
	t.Run("ReadOnlyExistingLog", func(t *testing.T) {
		// A log left by a crash-free stop, on a directory remounted
		// read-only before the start: bbolt's read-write open fails.
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		mountTmpfs(t, data, "16m", "a read-only file system cannot be made otherwise")
		firstStartRun(t, dir, data, 3, startFault{
			arm: func(t *testing.T) {
				if err := syscall.Mount("tmpfs", data, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, "size=16m,mode=0700"); err != nil {
					t.Fatalf("remounting read-only: %v", err)
				}
			},
			start: startPlain,
			free: func(t *testing.T, _ *crashDaemon) {
				if err := syscall.Mount("tmpfs", data, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
					t.Fatalf("remounting read-write: %v", err)
				}
			},
			problem: "the data directory's file system is read-only",
		})
	})
	t.Run("RlimitNoLog", func(t *testing.T) {
		dir := t.TempDir()
		firstStartRun(t, dir, filepath.Join(dir, "data"), 0, rlimitFault)
	})
	t.Run("RlimitMigration", func(t *testing.T) {
		// Records stored by this release, the log then marked one schema
		// older: the start must migrate it, which writes.
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		fault := rlimitFault
		fault.arm = func(t *testing.T) {
			setLogSchema(t, filepath.Join(data, checkpoint.FileName), uint64(checkpoint.SchemaVersion()-1))
		}
		firstStartRun(t, dir, data, 3, fault)
	})
}

// firstStartRun runs the daemon once with premade messages delivered and
// stops it cleanly (when premade > 0), arms the fault, starts the daemon
// and checks it degrades and then resumes.
func firstStartRun(t *testing.T, dir, data string, premade int, fault startFault) {
	bin := ehrbridgeBinary(t)
	sandboxAddr, mllpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startSandboxProcess(t, bin, sandboxAddr, []string{"--listen", sandboxAddr, "--tls-listen", "off"})
	cfg := fullDiskConfig(t, data, adminAddr, sandboxAddr, mllpAddr, "")
	cfgFile := filepath.Join(dir, "ehrbridge.yaml")
	delivered := func(n int) bool {
		keys := map[string]int{}
		for _, rec := range objects(sandboxAddr, "Account") {
			k, _ := rec["EHR_Patient_Key__c"].(string)
			keys[k]++
		}
		for i := range n {
			if keys[fmt.Sprintf("H|FD%05d", i)] != 1 {
				return false
			}
		}
		return len(keys) == n
	}
	if premade > 0 {
		d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)
		for i := range premade {
			if code, err := fullDiskSend(mllpAddr, fullDiskMessage(i)); err != nil || code != "AA" {
				t.Fatalf("message %d before the fault: %s %v", i, code, err)
			}
		}
		waitFor(t, 20*time.Second, "the first messages delivered", func() bool { return delivered(premade) })
		d.stop(t)
	} else if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	fault.arm(t)
	d := &crashDaemon{bin: bin, config: cfgFile, readyURL: "http://" + adminAddr + "/readyz", logs: &syncbuf.Buffer{}}
	t.Cleanup(func() {
		if cmd, exited := d.current(); cmd != nil {
			select {
			case <-exited:
			default:
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\ndaemon log (tail):\n%s", append(args, crashTail(d.logs.String(), 3000))...)
	}
	fault.start(t, d)
	var code int
	var body string
	waitFor(t, 20*time.Second, "/readyz to answer", func() bool {
		_, exited := d.current()
		select {
		case <-exited:
			fail("the daemon exited at start: %v", d.exitErr())
		default:
		}
		code, body = fullDiskGet(t, "http://"+adminAddr+"/readyz")
		return code != 0
	})
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: "+fault.problem) {
		fail("/readyz at a start the disk refuses = %d %q, want 503 naming %q", code, body, fault.problem)
	}
	// One connection, kept across the fault's end.
	c, err := net.DialTimeout("tcp", mllpAddr, 5*time.Second)
	if err != nil {
		fail("the MLLP port refused a connection: %v", err)
	}
	defer c.Close()
	r := mllp.NewReader(c, 0)
	sendOn := func(i int) string {
		t.Helper()
		if err := mllp.WriteFrame(c, fullDiskMessage(i)); err != nil {
			fail("message %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		ack, err := r.ReadFrame()
		if err != nil {
			fail("message %d: no answer: %v", i, err)
		}
		for seg := range strings.SplitSeq(string(ack), "\r") {
			if f := strings.Split(seg, "|"); len(f) > 1 && f[0] == "MSA" {
				return f[1]
			}
		}
		fail("message %d: no MSA in %q", i, ack)
		return ""
	}
	for range 2 {
		if code := sendOn(premade); code != "AE" {
			fail("message %d at a start the disk refuses answered %s, want AE", premade, code)
		}
	}
	var st struct {
		Storage struct {
			Writable bool   `json:"writable"`
			Problem  string `json:"problem"`
		} `json:"storage"`
	}
	if _, b := fullDiskGet(t, "http://"+adminAddr+"/status"); json.Unmarshal([]byte(b), &st) != nil || st.Storage.Writable ||
		!strings.HasPrefix(st.Storage.Problem, fault.problem) {
		fail("/status storage at a start the disk refuses: %s", b)
	}

	fault.free(t, d)
	waitFor(t, 10*time.Second, "/readyz ready after the disk takes writes", func() bool {
		code, _ := fullDiskGet(t, "http://"+adminAddr+"/readyz")
		return code == http.StatusOK
	})
	if code := sendOn(premade); code != "AA" {
		fail("message %d resent on the same connection after the disk takes writes answered %s, want AA", premade, code)
	}
	waitFor(t, 20*time.Second, "every message delivered once", func() bool { return delivered(premade + 1) })
	// The CRM has the record before the log has it done (settled after
	// the CRM's answer).
	waitFor(t, 10*time.Second, "every record done", func() bool {
		s := fullDiskStates(adminAddr)
		return s["done"] == int64(premade+1) && s["in_progress"]+s["retrying"]+s["received"]+s["dead"] == 0
	})
	if _, exited := d.current(); exited != nil {
		select {
		case <-exited:
			fail("the daemon exited: %v", d.exitErr())
		default:
		}
	}
}

// startFill writes a file in dir until its file system has no room left.
func startFill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}
