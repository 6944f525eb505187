package tests

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

// Crash-safety acceptance test parameters.
const (
	crashSenders      = 8
	crashMinMessages  = 2000  // distinct messages, at least
	crashMaxMessages  = 40000 // a bound on the log list (which is read with --limit 100000)
	crashMinKills     = 20    // required
	crashKills        = 60    // what the killer aims for
	crashRetransmitN  = 8     // every Nth new message of a sender is followed by a retransmit
	crashPatients     = 50
	crashTrafficLimit = 60 * time.Second
	crashSource       = "crash"
	crashApp          = "CRASHTEST"
	crashFacility     = "WARD9"
)

// crashMsg is one distinct message and the first acknowledgment it got.
type crashMsg struct {
	id    string
	key   string
	bytes []byte
	ack   []byte
}

// crashRun holds the counters shared by the senders and the killer.
type crashRun struct {
	daemon *crashDaemon
	addr   string

	issued      atomic.Int64 // distinct messages started
	acked       atomic.Int64 // distinct messages acknowledged with AA
	retransmits atomic.Int64 // deliberate retransmits of acknowledged messages, ACK verified
	resends     atomic.Int64 // resends after a connection error, short ACK or AE
	aes         atomic.Int64 // AE answers
	inflight    atomic.Int64 // exchanges under way
	kills       atomic.Int64
	killsHit    atomic.Int64 // kills while at least one exchange was under way
	killerDone  atomic.Bool

	failOnce sync.Once
	failErr  error
	cancel   context.CancelFunc
}

func (r *crashRun) fail(err error) {
	r.failOnce.Do(func() {
		r.failErr = err
		r.cancel()
	})
}

func (r *crashRun) counts() string {
	return fmt.Sprintf("%d distinct messages issued, %d acknowledged, %d retransmits, %d kills (%d with messages in flight), %d resends after errors, %d AE",
		r.issued.Load(), r.acked.Load(), r.retransmits.Load(), r.kills.Load(), r.killsHit.Load(), r.resends.Load(), r.aes.Load())
}

// TestCrashSafetyKill9 is the crash-safety acceptance test: eight EHR-like
// senders push thousands of messages (and retransmits) at the daemon while
// it is SIGKILLed and restarted over and over. Every message must end up in
// the log exactly once with the ACK its sender was given, every retransmit
// must get the original ACK's bytes, and the file must check clean.
func TestCrashSafetyKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash-safety test skipped in -short mode")
	}
	began := time.Now()
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	mllpAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "ehrbridge.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
log:
  format: text
  level: warn
  output: stderr
admin:
  listen: %s
sources:
  mllp:
    - name: %s
      listen: %s
      hash_ignore: [MSH-7]
`, dataDir, adminAddr, crashSource, mllpAddr)
	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), crashTrafficLimit)
	defer cancel()
	run := &crashRun{daemon: d, addr: mllpAddr, cancel: cancel}
	trafficStart := time.Now()

	var killerWG sync.WaitGroup
	killerWG.Add(1)
	go func() {
		defer killerWG.Done()
		defer run.killerDone.Store(true)
		run.killer(ctx, rand.New(rand.NewPCG(seed, 0)))
	}()
	results := make([][]*crashMsg, crashSenders)
	var sendersWG sync.WaitGroup
	for g := range crashSenders {
		sendersWG.Add(1)
		go func() {
			defer sendersWG.Done()
			msgs, err := run.sender(ctx, g, rand.New(rand.NewPCG(seed, uint64(g)+1)))
			results[g] = msgs
			if err != nil {
				run.fail(err)
			}
		}()
	}
	sendersWG.Wait()
	// The senders stop only once the killer is done, unless something
	// failed: then the context is cancelled and the killer stops too.
	killerWG.Wait()
	trafficDone := time.Now()
	if run.failErr == nil && ctx.Err() != nil {
		run.failErr = fmt.Errorf("traffic phase not done within %v: %w", crashTrafficLimit, ctx.Err())
	}
	if run.failErr != nil {
		t.Fatalf("%v\nso far: %s\ndaemon log (tail):\n%s", run.failErr, run.counts(), crashTail(d.logs.String(), 4000))
	}

	// Stop cleanly: SIGTERM must give exit 0.
	cmd, exited := d.current()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if err := d.exitErr(); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, crashTail(d.logs.String(), 4000))
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not stop within 20s of SIGTERM\n%s", crashTail(d.logs.String(), 4000))
	}

	// What was sent and acknowledged, by record key.
	sent := map[string]*crashMsg{}
	for _, msgs := range results {
		for _, m := range msgs {
			if m.ack == nil {
				t.Fatalf("message %s has no acknowledgment", m.id)
			}
			if sent[m.key] != nil {
				t.Fatalf("control id %s sent as two distinct messages", m.id)
			}
			sent[m.key] = m
		}
	}
	if int64(len(sent)) != run.issued.Load() || int64(len(sent)) != run.acked.Load() {
		t.Fatalf("bookkeeping: %d messages collected, %s", len(sent), run.counts())
	}
	if len(sent) < crashMinMessages {
		t.Fatalf("only %d distinct messages were sent, want at least %d", len(sent), crashMinMessages)
	}
	if k, hit := run.kills.Load(), run.killsHit.Load(); k < crashMinKills || hit < crashMinKills {
		t.Fatalf("%d kills, %d of them with messages in flight; want at least %d of each", k, hit, crashMinKills)
	}
	if r := run.retransmits.Load(); r*10 < int64(len(sent)) {
		t.Fatalf("only %d retransmits for %d messages, want at least 10%%", r, len(sent))
	}

	// The log holds every acknowledged message exactly once, with the ACK
	// its sender was given, and nothing else.
	out, errOut, code := runBin(t, bin, "log", "list", "--state", "all", "--limit", "100000", "--json", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("log list: exit %d\n%s", code, errOut)
	}
	var recs []struct {
		ID           uint64 `json:"id"`
		Key          string `json:"key"`
		State        string `json:"state"`
		Ack          string `json:"ack"`
		ContentHash  string `json:"content_hash"`
		PayloadBytes int    `json:"payload_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("log list output: %v", err)
	}
	seenKey := map[string]uint64{}
	seenID := map[uint64]bool{}
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, r := range recs {
		if prev, dup := seenKey[r.Key]; dup {
			problem("key %q appears twice: records %d and %d", r.Key, prev, r.ID)
			continue
		}
		seenKey[r.Key] = r.ID
		if seenID[r.ID] {
			problem("record id %d appears twice", r.ID)
		}
		seenID[r.ID] = true
		m := sent[r.Key]
		if m == nil {
			problem("record %d has key %q, which no sender sent", r.ID, r.Key)
			continue
		}
		if r.Ack != string(m.ack) {
			problem("record %d (%s): stored ACK differs from the one the sender got first:\nstored %q\nsent   %q", r.ID, m.id, r.Ack, m.ack)
		}
		if r.PayloadBytes != len(m.bytes) {
			problem("record %d (%s): payload of %d bytes, sent %d", r.ID, m.id, r.PayloadBytes, len(m.bytes))
		}
		if want := crashContentHash(t, m.bytes); r.ContentHash != want {
			problem("record %d (%s): content hash %s, the sent message's is %s", r.ID, m.id, r.ContentHash, want)
		}
	}
	missing := 0
	for _, key := range slices.Sorted(maps.Keys(sent)) {
		if _, ok := seenKey[key]; !ok {
			missing++
			problem("message %s was acknowledged AA but is not in the log", sent[key].id)
		}
	}
	if len(recs) != len(sent) || missing > 0 || len(problems) > 0 {
		t.Fatalf("log holds %d records for %d distinct acknowledged messages (%d missing):\n%s\nrun: %s",
			len(recs), len(sent), missing, strings.Join(problems, "\n"), run.counts())
	}
	out, errOut, code = runBin(t, bin, "log", "list", "--state", "conflict", "--limit", "100000", "--json", "--data-dir", dataDir)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("log list --state conflict: exit %d, want no conflicts:\n%s%s", code, crashTail(out, 2000), errOut)
	}
	out, errOut, code = runBin(t, bin, "log", "check", "--data-dir", dataDir)
	if want := filepath.Join(dataDir, checkpoint.FileName) + ": ok\n"; code != 0 || out != want {
		t.Fatalf("log check: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	t.Logf("crash safety: %d messages, %d retransmits (ACK byte-identical), %d kills (%d with messages in flight), %d resends after errors (%d AE), traffic %v, total %v",
		len(sent), run.retransmits.Load(), run.kills.Load(), run.killsHit.Load(), run.resends.Load(), run.aes.Load(),
		trafficDone.Sub(trafficStart).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// killer SIGKILLs the daemon at random moments and restarts it, crashKills
// times.
func (r *crashRun) killer(ctx context.Context, rng *rand.Rand) {
	for r.kills.Load() < crashKills {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(50+rng.IntN(351)) * time.Millisecond):
		}
		hit := r.inflight.Load() > 0
		if err := r.daemon.kill(); err != nil {
			r.fail(fmt.Errorf("kill %d: %w\ndaemon log (tail):\n%s", r.kills.Load()+1, err, crashTail(r.daemon.logs.String(), 4000)))
			return
		}
		r.kills.Add(1)
		if hit {
			r.killsHit.Add(1)
		}
		if err := r.daemon.start(); err != nil {
			r.fail(fmt.Errorf("restart after kill %d: %w", r.kills.Load(), err))
			return
		}
		if err := r.daemon.waitReady(ctx); err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("restart after kill %d: %w\ndaemon log (tail):\n%s", r.kills.Load(), err, crashTail(r.daemon.logs.String(), 4000)))
			}
			return
		}
	}
}

// crashSender is one EHR connection.
type crashSender struct {
	run  *crashRun
	g    int
	conn net.Conn
	rd   *mllp.Reader
}

// sender sends new messages until the killer is done and enough were
// sent, retransmitting earlier acknowledged ones now and then.
func (r *crashRun) sender(ctx context.Context, g int, rng *rand.Rand) ([]*crashMsg, error) {
	s := &crashSender{run: r, g: g}
	defer s.close()
	var msgs []*crashMsg
	for n := 0; ; n++ {
		if r.killerDone.Load() && r.issued.Load() >= crashMinMessages {
			return msgs, nil
		}
		if r.issued.Load() >= crashMaxMessages && len(msgs) > 0 {
			// Enough messages; keep the daemon busy with retransmits
			// until the killer is done.
			if err := s.retransmit(ctx, msgs[rng.IntN(len(msgs))]); err != nil {
				return msgs, err
			}
			continue
		}
		r.issued.Add(1)
		m := crashMessage(g, n, rng)
		msgs = append(msgs, m)
		ack, err := s.exchange(ctx, m)
		if err != nil {
			return msgs, err
		}
		parsed, err := hl7.Parse(ack)
		if err != nil {
			return msgs, fmt.Errorf("%s: ACK does not parse: %v\n%q", m.id, err, ack)
		}
		if code, ctrl, _, ok := parsed.Ack(); !ok || code != hl7.AA || ctrl != m.id {
			return msgs, fmt.Errorf("%s: first ACK has MSA %q/%q, want AA/%s", m.id, code, ctrl, m.id)
		}
		m.ack = ack
		r.acked.Add(1)
		if n%crashRetransmitN == crashRetransmitN-1 {
			if err := s.retransmit(ctx, msgs[rng.IntN(len(msgs))]); err != nil {
				return msgs, err
			}
		}
	}
}

// retransmit sends an acknowledged message again: the answer must be the
// first ACK's bytes.
func (s *crashSender) retransmit(ctx context.Context, m *crashMsg) error {
	ack, err := s.exchange(ctx, m)
	if err != nil {
		return err
	}
	if !bytes.Equal(ack, m.ack) {
		return fmt.Errorf("retransmit of %s got a different ACK:\nfirst %q\nnow   %q", m.id, m.ack, ack)
	}
	s.run.retransmits.Add(1)
	return nil
}

// exchange sends m until an AA arrives, as an EHR would: a connection
// error, a missing or short ACK or an AE makes it reconnect if needed and
// send the same bytes again. AR, or an ACK for another control id, is a
// failure.
func (s *crashSender) exchange(ctx context.Context, m *crashMsg) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.run.resends.Add(1)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", m.id, err)
		}
		if err := s.connect(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", m.id, err)
		}
		ack, err := s.roundTrip(m.bytes)
		if err != nil {
			s.close()
			continue
		}
		parsed, err := hl7.Parse(ack)
		if err != nil {
			return nil, fmt.Errorf("%s: ACK does not parse: %v\n%q", m.id, err, ack)
		}
		code, ctrl, text, ok := parsed.Ack()
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: answer has no MSA segment: %q", m.id, ack)
		case ctrl != m.id:
			return nil, fmt.Errorf("%s: ACK acknowledges %q", m.id, ctrl)
		case code == hl7.AA:
			return ack, nil
		case code == hl7.AE:
			s.run.aes.Add(1)
			time.Sleep(20 * time.Millisecond)
			continue
		default:
			return nil, fmt.Errorf("%s: answered %s (%s): %q", m.id, code, text, ack)
		}
	}
}

func (s *crashSender) roundTrip(msg []byte) ([]byte, error) {
	s.run.inflight.Add(1)
	defer s.run.inflight.Add(-1)
	_ = s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := mllp.WriteFrame(s.conn, msg); err != nil {
		return nil, err
	}
	return s.rd.ReadFrame()
}

// connect dials until the daemon answers, with a short backoff.
func (s *crashSender) connect(ctx context.Context) error {
	backoff := 5 * time.Millisecond
	for s.conn == nil {
		c, err := net.DialTimeout("tcp", s.run.addr, time.Second)
		if err == nil {
			s.conn, s.rd = c, mllp.NewReader(c, 0)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dialing: %v (%w)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
	return nil
}

func (s *crashSender) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.rd = nil, nil
	}
}

// crashMessage builds sender g's nth ADT^A01: unique MSH-10, one of
// crashPatients patients, OBX padding to a random size of 200 B to 5 KB.
func crashMessage(g, n int, rng *rand.Rand) *crashMsg {
	id := fmt.Sprintf("CR-%d-%d", g, n)
	now := time.Now().Format("20060102150405")
	var b strings.Builder
	fmt.Fprintf(&b, "MSH|^~\\&|%s|%s|EHRBRIDGE|HOSP|%s||ADT^A01^ADT_A01|%s|P|2.5.1\r", crashApp, crashFacility, now, id)
	fmt.Fprintf(&b, "EVN|A01|%s\r", now)
	fmt.Fprintf(&b, "PID|1||P%04d^^^HOSP^MR||CRASH^TEST^%d||19700101|U\r", rng.IntN(crashPatients), g)
	b.WriteString("PV1|1|I|WARD9^101^A\r")
	const letters = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"
	target := 200 + rng.IntN(4801)
	for i := 1; b.Len() < target; i++ {
		fmt.Fprintf(&b, "OBX|%d|TX|NOTE^Note^L||", i)
		for range min(300, max(1, target-b.Len()-8)) {
			b.WriteByte(letters[rng.IntN(len(letters))])
		}
		b.WriteString("||||||F\r")
	}
	return &crashMsg{id: id, key: crashSource + "|" + crashApp + "|" + crashFacility + "|" + id, bytes: []byte(b.String())}
}

// crashContentHash is what `log list` shows as content_hash for a message
// from the test's source (hash_ignore: [MSH-7]).
func crashContentHash(t *testing.T, msg []byte) string {
	t.Helper()
	m, err := hl7.Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	h := ehr.ContentHash(m, []hl7.Path{hl7.MustPath("MSH-7")})
	return hex.EncodeToString(h[:8])
}
