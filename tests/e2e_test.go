package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// The newcomer's path: `ehrbridge run` on the shipped config answers
// `ehrbridge send` of a corpus message with AA, reports it on /status,
// keeps patient data out of its log and stops cleanly on SIGTERM.
func TestEndToEndRunAndSend(t *testing.T) {
	bin := ehrbridgeBinary(t)
	mllpAddr, adminAddr := freeAddr(t), freeAddr(t)
	dataDir := t.TempDir()
	sandboxAddr := freeAddr(t)
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+dataDir, "EHRBRIDGE_MLLP_ADDR="+mllpAddr, "EHRBRIDGE_ADMIN_ADDR="+adminAddr, "EHRBRIDGE_SANDBOX_ADDR="+sandboxAddr)
	d := startDaemon(t, bin, filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml"), adminAddr, env)
	cmd, logs, exited := d.cmd, d.logs, d.exited

	adt := corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")
	batch := corpus(t, "CDCgov-trusted-intermediary", "Test", "Results", "005_AL_ORU_R01_NBS_Simplified_0_initial_message.hl7")
	out, errOut, code := runBin(t, bin, "send", "--to", mllpAddr, adt, batch)
	// The ORU's MSH-15/MSH-16 are both NE (enhanced mode, table 0155:
	// never): the listener stores it and answers nothing, and send takes
	// the quiet period without an error as its acceptance.
	if code != 0 || out != "MSG00001 AA\n858625 - no error within the quiet period (MSH-15/MSH-16 ask for no answer on success)\n" {
		t.Fatalf("send: exit %d\nstdout %q\nstderr %q\nlog:\n%s", code, out, errOut, logs)
	}
	// Done-when of the checkpoint issue: the same message twice gets the
	// same ACK bytes twice, and the log holds one record for it.
	first, second := rawSend(t, mllpAddr, adt), rawSend(t, mllpAddr, adt)
	if !bytes.Equal(first, second) || !bytes.Contains(first, []byte("MSA|AA|MSG00001")) {
		t.Errorf("retransmit ACK differs:\n%q\n%q", first, second)
	}
	stats, _, code := runBin(t, bin, "log", "stats", "--json", "--data-dir", dataDir)
	if code != 0 || totalRecords(t, stats) == 0 {
		// With only --data-dir the CLI reaches the running daemon on its
		// admin socket in the data directory.
		t.Errorf("log stats --data-dir on a running daemon: exit %d, %s", code, stats)
	}
	noID := corpus(t, "CDCgov-trusted-intermediary", "Test", "Message", "msh_present_but_missing_msh-10.hl7")
	out, _, code = runBin(t, bin, "send", "--to", mllpAddr, noID)
	if code != 1 || !strings.HasPrefix(out, "- AR ") {
		t.Errorf("send without MSH-10: exit %d, %q; want exit 1 and an AR", code, out)
	}

	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Sources []struct {
			Name               string
			Accepted, Rejected int64
		}
		Commits struct {
			Count, Appends, Failures uint64
			MeanBatch                float64 `json:"mean_batch"`
			MeanMs                   float64 `json:"mean_ms"`
		} `json:"checkpoint_commits"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Sources) != 1 || st.Sources[0].Name != "ehr" || st.Sources[0].Accepted != 2 || st.Sources[0].Rejected != 1 {
		t.Errorf("status = %+v", st)
	}
	// The two accepted messages and the two retransmits went through a
	// commit each (the AR was refused before the log); write-back may add notes.
	if c := st.Commits; c.Appends < 4 || c.Count < 1 || c.Failures != 0 || c.MeanBatch < 1 || c.MeanMs <= 0 {
		t.Errorf("status checkpoint_commits = %+v", c)
	}
	// The admin page lists the records' states, never message content.
	resp, err = http.Get("http://" + adminAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<h2>Newest records</h2>") || !strings.Contains(string(page), "ADT^A01") {
		t.Errorf("admin page:\n%s", page)
	}
	for _, phi := range []string{"EVERYMAN", "PATID1234", "MSG00001"} {
		if strings.Contains(string(page), phi) {
			t.Errorf("admin page shows %q", phi)
		}
	}
	// While the daemon runs, log stats goes through its admin endpoint.
	shipped := filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml")
	logStats := func() string {
		c := exec.Command(bin, "log", "stats", "--json", "--config", shipped)
		c.Env = env
		out, err := c.Output()
		if err != nil {
			t.Fatalf("log stats: %v", err)
		}
		return string(out)
	}
	if n := totalRecords(t, logStats()); n != 2 {
		t.Errorf("log stats (running daemon): %d records, want 2", n)
	}
	// The pipeline sends the admission to the embedded CRM sandbox.
	waitFor(t, 20*time.Second, "the patient in the sandbox", func() bool {
		resp, err := http.Get("http://" + sandboxAddr + "/sandbox/v1/objects/Account")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var recs []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&recs)
		for _, r := range recs {
			if r["LastName"] == "EVERYMAN" && r["PersonBirthdate"] == "1988-08-18" {
				return true
			}
		}
		return false
	})
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ehrbridge_pipeline_records_total{outcome="done"}`, `ehrbridge_records{state="done"}`, `ehrbridge_messages_total{outcome="retransmit"} 2`,
		"ehrbridge_crm_api_requests_limit 100000", "ehrbridge_backlog ", "ehrbridge_crm_requests_total "} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	// Every message, retransmits included, went through a group commit.
	msgs := metricValue(t, metrics, `ehrbridge_messages_total{outcome="acknowledged"}`) + metricValue(t, metrics, `ehrbridge_messages_total{outcome="retransmit"}`)
	commits := metricValue(t, metrics, "ehrbridge_checkpoint_commit_duration_seconds_count")
	if appends := metricValue(t, metrics, "ehrbridge_checkpoint_committed_appends_total"); appends < msgs || commits < 1 || commits > appends {
		t.Errorf("%v commits carried %v appends for %v messages", commits, appends, msgs)
	}
	if inf := metricValue(t, metrics, `ehrbridge_checkpoint_commit_duration_seconds_bucket{le="+Inf"}`); inf != commits {
		t.Errorf("+Inf bucket %v, count %v", inf, commits)
	}
	if metricValue(t, metrics, "ehrbridge_checkpoint_commit_failures_total") != 0 || metricValue(t, metrics, "ehrbridge_checkpoint_commit_duration_seconds_sum") <= 0 {
		t.Errorf("commit failures or duration sum wrong:\n%s", metrics)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if d.err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", d.err, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("did not stop within 10s of SIGTERM\n%s", logs)
	}
	if n := totalRecords(t, logStats()); n != 2 {
		t.Errorf("log stats (stopped daemon): %d records, want 2", n)
	}
	if out, _, code := runBin(t, bin, "log", "check", "--data-dir", dataDir); code != 0 {
		t.Errorf("log check: exit %d %s", code, out)
	}
	log := logs.String()
	for _, want := range []string{"mllp source listening", "hl7 message stored and acknowledged", "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Names, identifiers and free text of the sent messages stay out of the log.
	for _, phi := range []string{"EVERYMAN", "PATID1234", "ADAM", "MSG00001", "Walker", "ty6vmz", "858625"} {
		if strings.Contains(log, phi) {
			t.Errorf("log contains %q:\n%s", phi, log)
		}
	}
}

// run refuses a config that does not lint, printing file:line:col.
func TestRunRefusesBadConfig(t *testing.T) {
	bin := ehrbridgeBinary(t)
	f := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(f, []byte("sources:\n  mllp:\n    - name: ehr\n      listne: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBin(t, bin, "run", "--config", f)
	if code != 1 || !strings.Contains(errOut, f+":4:7: ") || !strings.Contains(errOut, "does not lint; not starting") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// A busy port makes run fail at once with a clear message.
func TestRunFailsOnBusyPort(t *testing.T) {
	bin := ehrbridgeBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(bin, "run", "--config", filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml"))
	cmd.Env = append(os.Environ(), "EHRBRIDGE_DATA_DIR="+t.TempDir(), "EHRBRIDGE_MLLP_ADDR="+l.Addr().String(), "EHRBRIDGE_ADMIN_ADDR="+freeAddr(t), "EHRBRIDGE_SANDBOX_ADDR="+freeAddr(t))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Errorf("err = %v, output:\n%s", err, out)
	}
}

// rawSend sends one file's message in one MLLP frame and returns the raw
// acknowledgment frame.
func rawSend(t *testing.T, addr, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := hl7.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := mllp.WriteFrame(c, parts[0]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack, err := mllp.NewReader(c, 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// metricValue returns the value of one series in a Prometheus text
// exposition, failing the test when it is missing.
func metricValue(t *testing.T, exposition []byte, series string) float64 {
	t.Helper()
	for line := range strings.Lines(string(exposition)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics lacks %s:\n%s", series, exposition)
	return 0
}
