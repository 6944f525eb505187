package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// Exactly-once acceptance test parameters.
const (
	eoSenders     = 8
	eoPatients    = 200 // patient p is sent by sender p % eoSenders, so its events keep their order
	eoORUShare    = 4   // every 4th message is an ORU^R01 with two results
	eoRetransmitN = 10  // every 10th message is sent twice
)

// The size of a run: 2,000 messages and at least 20 kills in `make test`;
// `make chaos KILLS=N` (EHRBRIDGE_CHAOS_KILLS) gives each of the four
// fault runs its share of N kills, with 5 messages per kill and the time
// that takes.
var (
	eoMinKills = int64(chaosKills(20))
	eoMessages = max(2000, 5*int(eoMinKills))
	eoTraffic  = max(90*time.Second, time.Duration(eoMinKills)*1500*time.Millisecond)
)

// eoPatientState is what the CRM must hold for a patient at the end.
type eoPatientState struct {
	mu      sync.Mutex
	lastSeq int // of the last message acknowledged for the patient
}

// eoCRM is one side of the sandbox the exactly-once test runs against.
type eoCRM struct {
	name, mappings string
	// sandboxArgs and crmConfig make the sandbox and the config's crm
	// section; the arguments are the sandbox's two addresses and a dir.
	sandboxArgs func(addr, tlsAddr, dir string) []string
	crmConfig   func(addr, tlsAddr, dir string) string
	// The patient object, its key and first-name fields; the
	// observation object and its key field, as /sandbox/v1/objects names
	// them.
	patient, patientKey, firstName, observation, observationKey string
}

// TestExactlyOnceToSalesforce runs the real binary against a CRM sandbox
// running apart: 2,000 ADT and ORU messages for 200 patients from 8
// connections, 10% retransmits, several updates per patient, sandbox
// faults (503 bursts, request-limit windows, 5% of writes applied but
// unanswered) and at least 20 SIGKILLs with restarts. At the end each
// patient is exactly one Account holding the values of the last message
// sent for it, each OBX exactly one CareObservation, nothing acknowledged
// is missing, and the log has drained.
func TestExactlyOnceToSalesforce(t *testing.T) {
	runExactlyOnce(t, eoCRM{name: "Salesforce", mappings: "healthcloud",
		sandboxArgs: func(addr, _, dir string) []string {
			return []string{"--listen", addr, "--tls-listen", "off", "--data", filepath.Join(dir, "crm.json")}
		},
		crmConfig: func(addr, _, _ string) string {
			return fmt.Sprintf("crm:\n  sandbox:\n    embed: false\n    listen: %s\n", addr)
		},
		patient: "Account", patientKey: "EHR_Patient_Key__c", firstName: "FirstName",
		observation: "CareObservation", observationKey: "EHR_Observation_Key__c"})
}

// TestExactlyOnceToDataverse is the same test against the sandbox's
// Dataverse side, through the Dynamics connector: its request-limit
// windows are 429s with Retry-After, and each patient must be exactly one
// contact, each OBX one msemr_observation.
func TestExactlyOnceToDataverse(t *testing.T) {
	runExactlyOnce(t, eoCRM{name: "Dataverse", mappings: "dynamics",
		sandboxArgs: func(addr, tlsAddr, dir string) []string {
			return []string{"--listen", addr, "--tls-listen", tlsAddr, "--tls-cert", filepath.Join(dir, "tls.pem"), "--data", filepath.Join(dir, "crm.json")}
		},
		crmConfig: func(addr, tlsAddr, dir string) string {
			return fmt.Sprintf("crm:\n  sandbox:\n    flavor: dataverse\n    embed: false\n    listen: %s\n    tls_listen: %s\n    tls_cert: %s\n",
				addr, tlsAddr, filepath.Join(dir, "tls.pem"))
		},
		patient: "contacts", patientKey: "msemr_medicalrecordnumber", firstName: "firstname",
		observation: "msemr_observations", observationKey: "msemr_observationnumber"})
}

func runExactlyOnce(t *testing.T, side eoCRM) {
	if testing.Short() {
		t.Skip("exactly-once test skipped in -short mode")
	}
	began := time.Now()
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	sandboxAddr, tlsAddr, mllpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	// The CRM runs apart, so that killing the daemon leaves its state alone.
	crm := startSandboxProcess(t, bin, sandboxAddr, side.sandboxArgs(sandboxAddr, tlsAddr, dir))

	cfgFile := filepath.Join(dir, "ehrbridge.yaml")
	mappingsDir := filepath.Join(shared.ModuleRoot(t), "configs", "mappings", side.mappings)
	cfg := fmt.Sprintf(`data_dir: %s
log:
  level: warn
admin:
  listen: %s
mappings:
  paths: [%s]
  timezone: UTC
%s  pipeline:
    batch_size: 100
    linger: 200ms
sources:
  mllp:
    - name: eo
      listen: %s
`, filepath.Join(dir, "data"), adminAddr, mappingsDir, side.crmConfig(sandboxAddr, tlsAddr, dir), mllpAddr)
	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)

	fault := func(body string) {
		resp, err := http.Post(crm+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Errorf("fault %s: %v", body, err)
			return
		}
		resp.Body.Close()
	}
	fault(`{"drop_after_commit_ratio":0.05}`)
	fault(`{"latency_ms":15}`) // so that kills land while requests are under way

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), eoTraffic)
	defer cancel()
	patients := make([]eoPatientState, eoPatients)
	acks := newAckBook()
	var next, acked, retransmits, kills atomic.Int64
	var oruResults sync.Map // OBR-3 → number of OBX
	var failOnce sync.Once
	var failErr error
	fail := func(err error) {
		failOnce.Do(func() { failErr = err; cancel() })
	}

	// Faults and kills while the traffic runs, and on while the pipeline
	// drains the backlog, so that kills land in the middle of CRM batches.
	var chaos sync.WaitGroup
	trafficDone := make(chan struct{})
	var killsDuringTraffic, killsDuringDrain atomic.Int64
	pending := func() int64 {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.WriteString(string(buf[:n]))
			if err != nil {
				break
			}
		}
		var total int64
		for _, line := range strings.Split(b.String(), "\n") {
			var st string
			var n int64
			if _, err := fmt.Sscanf(line, "ehrbridge_records{state=%q} %d", &st, &n); err == nil && st != "done" && st != "dead" && st != "skipped" {
				total += n
			}
		}
		return total
	}
	chaos.Add(1)
	go func() {
		defer chaos.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(150+rng.IntN(400)) * time.Millisecond):
			}
			draining := false
			select {
			case <-trafficDone:
				draining = true
			default:
			}
			// Never fewer than eoMinKills; past that, stop once the drain
			// had its share of kills or the backlog is gone.
			if draining && kills.Load() >= eoMinKills && (killsDuringDrain.Load() >= eoMinKills/2 || pending() == 0) {
				return
			}
			switch rng.IntN(6) {
			case 0:
				fault(`{"status":503,"count":3}`)
			case 1:
				fault(`{"request_limit_exceeded":true,"seconds":1}`)
			}
			if err := d.kill(); err != nil {
				fail(fmt.Errorf("kill: %w", err))
				return
			}
			kills.Add(1)
			if draining {
				killsDuringDrain.Add(1)
			} else {
				killsDuringTraffic.Add(1)
			}
			if err := d.start(); err != nil {
				fail(err)
				return
			}
			if err := d.waitReady(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("restart: %w\n%s", err, crashTail(d.logs.String(), 3000)))
				return
			}
		}
	}()

	var senders sync.WaitGroup
	for g := range eoSenders {
		senders.Add(1)
		go func() {
			defer senders.Done()
			c := &mllp.Client{Addr: mllpAddr, AckTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)}
			defer c.Close()
			send := func(msg []byte) error {
				for ctx.Err() == nil {
					resp, err := c.Send(ctx, msg)
					if err == nil && resp.Code == hl7.AA {
						acks.record(msg, resp.Raw)
						return nil
					}
					if err == nil && resp.Code != hl7.AE {
						return fmt.Errorf("answered %s %s", resp.Code, resp.Text)
					}
					time.Sleep(20 * time.Millisecond) // the daemon is restarting
				}
				return ctx.Err()
			}
			// In make chaos the traffic is paced to last about as long as
			// the kills take, so that they land while messages arrive.
			pace := time.Duration(eoMinKills) * 350 * time.Millisecond / time.Duration(eoMessages/eoSenders)
			if eoMinKills <= 20 {
				pace = 0
			}
			for {
				n := int(next.Add(1))
				if n > eoMessages {
					return
				}
				if pace > 0 {
					time.Sleep(pace)
				}
				// Patients belonging to this sender, in turn.
				p := g + eoSenders*((n/eoSenders)%(eoPatients/eoSenders))
				msg, obr, nobx := eoMessage(n, p)
				if err := send(msg); err != nil {
					fail(fmt.Errorf("message %d: %w", n, err))
					return
				}
				acked.Add(1)
				if obr != "" {
					oruResults.Store(obr, nobx)
				}
				ps := &patients[p]
				ps.mu.Lock()
				ps.lastSeq = n
				ps.mu.Unlock()
				if n%eoRetransmitN == 0 {
					if err := send(msg); err != nil {
						fail(fmt.Errorf("retransmit %d: %w", n, err))
						return
					}
					retransmits.Add(1)
				}
			}
		}()
	}
	senders.Wait()
	close(trafficDone)
	chaos.Wait()
	if failErr != nil {
		t.Fatalf("%v\ndaemon log:\n%s", failErr, crashTail(d.logs.String(), 4000))
	}
	if acked.Load() != int64(eoMessages) || kills.Load() < eoMinKills {
		t.Fatalf("%d of %d messages acknowledged, %d kills", acked.Load(), eoMessages, kills.Load())
	}
	if killsDuringDrain.Load() == 0 {
		t.Logf("note: the backlog drained before any kill landed during the drain")
	}
	// Clear the faults and let the log drain.
	req, _ := http.NewRequest(http.MethodDelete, crm+"/sandbox/v1/faults", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	waitFor(t, 120*time.Second, "the log to drain", func() bool { return pending() == 0 })
	out, _, code := runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	var stats struct {
		States map[string]int64 `json:"states"`
	}
	if err := json.Unmarshal([]byte(out), &stats); code != 0 || err != nil {
		t.Fatalf("log stats: exit %d %v", code, err)
	}
	if stats.States["done"] != int64(eoMessages) {
		dead, _, _ := runBin(t, bin, "log", "list", "--state", "dead", "--config", cfgFile)
		t.Errorf("states %v, want %d done\n%s", stats.States, eoMessages, dead)
	}

	// The CRM: one Account per patient with the last message's values,
	// one CareObservation per OBX sent.
	objects := func(name string) []map[string]any {
		resp, err := http.Get(crm + "/sandbox/v1/objects/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var recs []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
			t.Fatal(err)
		}
		return recs
	}
	accounts := map[string][]map[string]any{}
	for _, a := range objects(side.patient) {
		k, _ := a[side.patientKey].(string)
		accounts[k] = append(accounts[k], a)
	}
	var problems []string
	for p := range eoPatients {
		key := fmt.Sprintf("GENHOSP|EO%04d", p)
		as := accounts[key]
		switch {
		case len(as) != 1:
			problems = append(problems, fmt.Sprintf("patient %s: %d records", key, len(as)))
		case as[0][side.firstName] != fmt.Sprintf("V%05d", patients[p].lastSeq):
			problems = append(problems, fmt.Sprintf("patient %s: first name %v, want the last message's V%05d", key, as[0][side.firstName], patients[p].lastSeq))
		}
	}
	if len(accounts) != eoPatients {
		problems = append(problems, fmt.Sprintf("%d distinct patients, want %d", len(accounts), eoPatients))
	}
	wantObs := 0
	oruResults.Range(func(_, v any) bool { wantObs += v.(int); return true })
	obsKeys := map[string]int{}
	for _, o := range objects(side.observation) {
		k, _ := o[side.observationKey].(string)
		obsKeys[k]++
	}
	dupObs := 0
	for _, n := range obsKeys {
		if n > 1 {
			dupObs++
		}
	}
	if len(obsKeys) != wantObs || dupObs > 0 {
		problems = append(problems, fmt.Sprintf("%d observation keys (%d duplicated), want %d", len(obsKeys), dupObs, wantObs))
	}
	stale, lost := 0, 0
	for p := range eoPatients {
		as := accounts[fmt.Sprintf("GENHOSP|EO%04d", p)]
		switch {
		case len(as) == 0:
			lost++
		case as[0][side.firstName] != fmt.Sprintf("V%05d", patients[p].lastSeq):
			stale++
		}
	}
	duplicated := dupObs
	for _, as := range accounts {
		if len(as) > 1 {
			duplicated++
		}
	}
	lost += max(0, wantObs-len(obsKeys))
	chaosReport(t, "inbound "+side.name, kills.Load(), map[string]int{"lost": lost, "duplicated": duplicated, "stale": stale, "differing-acks": acks.differing()})
	if len(problems) > 0 {
		if len(problems) > 15 {
			problems = problems[:15]
		}
		t.Fatalf("CRM state:\n%s", strings.Join(problems, "\n"))
	}
	resp, err := http.Get(crm + "/sandbox/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		RequestsTotal int64            `json:"requests_total"`
		ByEndpoint    map[string]int64 `json:"by_endpoint"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	t.Logf("exactly-once to %s: %d messages (%d retransmits) for %d patients, %d kills (%d during traffic, %d while the pipeline drained), %d observations; CRM requests %d (%.3f per message; %v); total %v",
		side.name, eoMessages, retransmits.Load(), eoPatients, kills.Load(), killsDuringTraffic.Load(), killsDuringDrain.Load(), wantObs, st.RequestsTotal, float64(st.RequestsTotal)/float64(eoMessages), st.ByEndpoint, time.Since(began).Round(time.Second))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("traffic took longer than %v", eoTraffic)
	}
}

// eoMessage makes message n for patient p: an ADT^A08 (three in four) or
// an ORU^R01 with two results. Every message carries FirstName V<n>, so
// the CRM shows which message for the patient was applied last.
func eoMessage(n, p int) (msg []byte, obr string, nobx int) {
	ts := "20260105103000"
	head := fmt.Sprintf("MSH|^~\\&|EHR|GENHOSP|EHRBRIDGE|CRM|%s||%%s|EO%06d|P|2.5.1\r", ts, n)
	pid := fmt.Sprintf("PID|1||EO%04d^^^GENHOSP^MR||PATIENT%04d^V%05d||19700101|F\r", p, p, n)
	if n%eoORUShare != 0 {
		return []byte(fmt.Sprintf(head, "ADT^A08^ADT_A01") + "EVN|A08|" + ts + "\r" + pid +
			fmt.Sprintf("PV1|1|I|4WEST^401^B||||||||||||||||V%04d^^^GENHOSP^VN|||||||||||||||||||||||||%s\r", p, ts)), "", 0
	}
	obr = fmt.Sprintf("ORD%06d", n)
	return []byte(fmt.Sprintf(head, "ORU^R01^ORU_R01") + pid +
		fmt.Sprintf("OBR|1||%s|24323-8^Panel^LN|||%s\r", obr, ts) +
		fmt.Sprintf("OBX|1|NM|2345-7^Glucose^LN|1|%d|mg/dL|70-99|N|||F|||%s\r", 80+n%40, ts) +
		fmt.Sprintf("OBX|2|NM|2951-2^Sodium^LN|1|%d|mmol/L|135-145|N|||F|||%s\r", 135+n%10, ts)), obr, 2
}
