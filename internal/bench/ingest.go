package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

// Defaults for IngestOptions.
const (
	// DefaultDuration is how long each phase runs.
	DefaultDuration = 5 * time.Second
	// DefaultConns is the width of the concurrent phases.
	DefaultConns = 64
)

// The goals the ratios are measured against.
const (
	// GoalOneConn is the least ingest 1 conn ÷ bbolt 1 Update/record.
	GoalOneConn = 0.6
	// GoalManyConns is the least ingest N conn ÷ bbolt N-way group commit.
	GoalManyConns = 0.5
	// GoalHalfLoadP99 is the most ACK p99 at half load ÷ the p99 of raw
	// bbolt group commits at the same load.
	GoalHalfLoadP99 = 3.0
)

// IngestOptions configure Ingest. Zero values select the defaults.
type IngestOptions struct {
	// Duration is how long each phase runs; default DefaultDuration.
	Duration time.Duration
	// Dir is the directory under which the phases' data directories are
	// made (and removed again); default the system temp directory. All
	// phases use it, so that they all measure the same filesystem.
	Dir string
	// Conns is the number of connections of the concurrent phases, and of
	// writers in the group-commit baseline; default DefaultConns.
	Conns int
}

// Phase is the outcome of one phase.
type Phase struct {
	// Name is the phase's label in the printed table.
	Name string
	// Count is the records committed or the messages acknowledged AA.
	Count int
	// Elapsed runs from the phase's start to its last answer.
	Elapsed time.Duration
	// Rate is Count per second of Elapsed.
	Rate float64
	// P50 and P99 are the latency a writer sees: the Update (bbolt 1
	// Update/record), the wait from queueing a record to its commit's
	// answer (group commit), or the ACK latency, frame sent to AA read
	// (ingest phases).
	P50, P99 time.Duration
	// CommitP50 and CommitP99 are the durations of the phase's commits:
	// the Update calls of the raw group-commit phases, the checkpoint
	// log's group commits in the ingest phases; 0 for bbolt 1
	// Update/record, whose commits are its P50 and P99.
	CommitP50, CommitP99 time.Duration
	// Offered is the paced phase's target rate per second; 0 elsewhere.
	Offered float64
	// CPU is the process's CPU time over the phase (receiver and load
	// generator together); 0 where it cannot be measured.
	CPU time.Duration

	lat     []time.Duration // raw latencies, kept to merge slices
	commits []time.Duration // raw durations of the commits
}

// merge adds another slice of the same phase.
func (p Phase) merge(q Phase) Phase {
	out := summarise(slices.Concat(p.lat, q.lat), p.Elapsed+q.Elapsed)
	out.setCommits(slices.Concat(p.commits, q.commits))
	out.Name, out.Offered, out.CPU = p.Name, p.Offered, p.CPU+q.CPU
	return out
}

func (p *Phase) setCommits(d []time.Duration) {
	slices.Sort(d)
	p.commits, p.CommitP50, p.CommitP99 = d, percentile(d, 0.50), percentile(d, 0.99)
}

// Ratio is one goal as measured.
type Ratio struct {
	// Name is the ratio's label in the printed report.
	Name string
	// Value is the measured ratio.
	Value float64
	// Goal is the bound the ratio is held to.
	Goal float64
	// AtMost is true when Goal is a maximum, false when it is a minimum.
	AtMost bool
	// Pass reports whether Value meets Goal.
	Pass bool
}

// IngestReport holds every figure Ingest printed.
type IngestReport struct {
	// Duration is each phase's length, Conns the concurrent phases' width
	// and PayloadBytes the size of a test message (and of the bbolt
	// baselines' values).
	Duration     time.Duration
	Conns        int
	PayloadBytes int
	// Bolt1 is raw bbolt with one Update per record; BoltGroup the same
	// with Conns writers sharing commits.
	Bolt1, BoltGroup Phase
	// Ingest1 is MLLP ingest over one connection, IngestMany over Conns
	// connections, HalfLoad over Conns connections paced to half of
	// IngestMany's rate.
	Ingest1, IngestMany, HalfLoad Phase
	// BoltHalf is BoltGroup with its writers paced like HalfLoad's
	// connections, run in slices between HalfLoad's: the commits the
	// half-load ACKs are held to, at the same load and the same time.
	BoltHalf Phase
	// AppendHalf is the checkpoint log alone at the same load and the same
	// time: paced writers call Append with entries made as the MLLP source
	// makes them, with no network and no parsing on the clock. It splits
	// the half-load ACK's distance from raw bbolt into the log's share
	// (AppendHalf ÷ BoltHalf) and the MLLP path's (HalfLoad ÷ AppendHalf).
	AppendHalf Phase
	// HalfFloor is HalfLoad without fsync (not durable), run in slices
	// between the other half-load phases: the ACK latency the MLLP path,
	// the log's CPU work and this machine's scheduling give with no disk
	// wait at all. HalfFloor.P99 ÷ BoltHalf.CommitP99 is a floor under
	// HalfLoadP99 that nothing in how the log waits for the disk can lower.
	HalfFloor Phase
	// Ceiling is IngestMany without fsync (not durable): the ingest path's
	// CPU and network limit on this machine, for reference. Ceiling.Rate ÷
	// BoltGroup.Rate is the most ManyConns could reach in this run.
	Ceiling Phase
	// OneConn is Ingest1.Rate ÷ Bolt1.Rate, ManyConns IngestMany.Rate ÷
	// BoltGroup.Rate, HalfLoadP99 HalfLoad.P99 ÷ BoltHalf.CommitP99.
	OneConn, ManyConns, HalfLoadP99 Ratio
}

// Pass reports whether every goal was met.
func (r IngestReport) Pass() bool {
	return r.OneConn.Pass && r.ManyConns.Pass && r.HalfLoadP99.Pass
}

// Ingest measures durable ingest and its bbolt baselines for opts.Duration
// each (the phases each ratio compares interleaved in slices), prints a
// table of the figures and the goals' ratios to w, and returns them. Every
// phase uses a fresh data
// directory, removed before Ingest returns; every server, connection and
// goroutine it started has stopped by then. A cancelled ctx ends the run
// with ctx's error.
func Ingest(ctx context.Context, opts IngestOptions, w io.Writer) (IngestReport, error) {
	if opts.Duration <= 0 {
		opts.Duration = DefaultDuration
	}
	if opts.Conns <= 0 {
		opts.Conns = DefaultConns
	}
	root, err := os.MkdirTemp(opts.Dir, "ehrbridge-bench-")
	if err != nil {
		return IngestReport{}, fmt.Errorf("bench: data directory: %w", err)
	}
	defer os.RemoveAll(root)

	gen := newMsgGen("P")
	payload, _ := gen.next()
	rep := IngestReport{Duration: opts.Duration, Conns: opts.Conns, PayloadBytes: len(payload)}
	n := opts.Conns
	type phaseFn func(ctx context.Context, dir string, d time.Duration) (Phase, error)
	run := func(name string, fn phaseFn, d time.Duration) (Phase, error) {
		dir, err := os.MkdirTemp(root, "phase-")
		if err != nil {
			return Phase{}, fmt.Errorf("bench: data directory: %w", err)
		}
		res, err := fn(ctx, dir, d)
		_ = os.RemoveAll(dir)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			return Phase{}, fmt.Errorf("bench: %s: %w", name, err)
		}
		res.Name = name
		return res, nil
	}
	// The phases a ratio compares run interleaved in short slices
	// (baseline, ingest, ingest, baseline, ...): this disk's speed drifts
	// by 2x within minutes, and a ratio of phases run far apart would
	// measure the drift.
	const rounds = 4
	type slot struct {
		dst  *Phase
		name string
		fn   phaseFn
	}
	// interleave runs the phases in rounds, each round in the order of the
	// last rotated by one, so that no phase always follows the same one.
	interleave := func(phases ...slot) error {
		slice := opts.Duration / rounds
		for i := range rounds {
			order := append(slices.Clone(phases[i%len(phases):]), phases[:i%len(phases)]...)
			for _, o := range order {
				res, err := run(o.name, o.fn, slice)
				if err != nil {
					return err
				}
				if i == 0 {
					*o.dst = res
				} else {
					*o.dst = o.dst.merge(res)
				}
			}
		}
		return nil
	}
	genS, genM, genH, genA, genF := newMsgGen("S"), newMsgGen("M"), newMsgGen("H"), newMsgGen("A"), newMsgGen("F")
	if err := interleave(
		slot{&rep.Bolt1, "bbolt 1 Update/record", func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return boltOneUpdate(ctx, dir, payload, d)
		}},
		slot{&rep.Ingest1, "ingest 1 conn", func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return ingestPhase(ctx, dir, genS, 1, d, 0, false)
		}}); err != nil {
		return rep, err
	}
	if err := interleave(
		slot{&rep.BoltGroup, fmt.Sprintf("bbolt %d-way group commit", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return boltGroupCommit(ctx, dir, payload, n, 0, d)
		}},
		slot{&rep.IngestMany, fmt.Sprintf("ingest %d conn", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return ingestPhase(ctx, dir, genM, n, d, 0, false)
		}}); err != nil {
		return rep, err
	}
	half := rep.IngestMany.Rate / 2
	if err := interleave(
		slot{&rep.BoltHalf, fmt.Sprintf("bbolt %d-way group commit, half load", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return boltGroupCommit(ctx, dir, payload, n, half, d)
		}},
		slot{&rep.HalfLoad, fmt.Sprintf("ingest %d conn, half load", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return ingestPhase(ctx, dir, genH, n, d, half, false)
		}},
		slot{&rep.AppendHalf, fmt.Sprintf("checkpoint.Append %d-way, half load", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return appendPhase(ctx, dir, genA, n, half, d)
		}},
		slot{&rep.HalfFloor, fmt.Sprintf("ingest %d conn, half load, no fsync", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
			return ingestPhase(ctx, dir, genF, n, d, half, true)
		}}); err != nil {
		return rep, err
	}
	genC := newMsgGen("C")
	ceiling, err := run(fmt.Sprintf("ingest %d conn, no fsync", n), func(ctx context.Context, dir string, d time.Duration) (Phase, error) {
		return ingestPhase(ctx, dir, genC, n, d, 0, true)
	}, opts.Duration)
	if err != nil {
		return rep, err
	}
	rep.Ceiling = ceiling

	rep.OneConn = atLeast(fmt.Sprintf("%s ÷ %s", rep.Ingest1.Name, rep.Bolt1.Name), rep.Ingest1.Rate, rep.Bolt1.Rate, GoalOneConn)
	rep.ManyConns = atLeast(fmt.Sprintf("%s ÷ %s", rep.IngestMany.Name, rep.BoltGroup.Name), rep.IngestMany.Rate, rep.BoltGroup.Rate, GoalManyConns)
	rep.HalfLoadP99 = Ratio{Name: "ACK p99 at half load ÷ bbolt commit p99 at the same load", Goal: GoalHalfLoadP99, AtMost: true}
	if rep.BoltHalf.CommitP99 > 0 {
		rep.HalfLoadP99.Value = float64(rep.HalfLoad.P99) / float64(rep.BoltHalf.CommitP99)
		rep.HalfLoadP99.Pass = rep.HalfLoadP99.Value <= GoalHalfLoadP99
	}
	return rep, printReport(w, rep, root)
}

func atLeast(name string, num, den, goal float64) Ratio {
	r := Ratio{Name: name, Goal: goal}
	if den > 0 {
		r.Value = num / den
		r.Pass = r.Value >= goal
	}
	return r
}

func printReport(w io.Writer, r IngestReport, root string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ehrbridge ingest benchmark: %s per phase, ADT^A01 messages of ~%d bytes, data under %s\n\n",
		r.Duration, r.PayloadBytes, filepath.Dir(root))
	phases := []Phase{r.Bolt1, r.BoltGroup, r.BoltHalf, r.AppendHalf, r.Ingest1, r.IngestMany, r.HalfLoad, r.HalfFloor, r.Ceiling}
	width := len("phase")
	for _, p := range phases {
		width = max(width, len(p.Name))
	}
	fmt.Fprintf(&b, "%-*s  %8s  %8s  %8s  %8s  %8s  %6s  %8s\n", width, "phase", "count", "rate/s", "p50 ms", "p99 ms", "commit99", "cores", "CPU µs")
	for _, p := range phases {
		commit, cores, per := "-", "-", "-"
		if p.CommitP99 > 0 {
			commit = ms(p.CommitP99)
		}
		if p.CPU > 0 && p.Elapsed > 0 && p.Count > 0 {
			cores = fmt.Sprintf("%.2f", p.CPU.Seconds()/p.Elapsed.Seconds())
			per = fmt.Sprintf("%.1f", float64(p.CPU)/float64(time.Microsecond)/float64(p.Count))
		}
		fmt.Fprintf(&b, "%-*s  %8d  %8.0f  %8s  %8s  %8s  %6s  %8s\n", width, p.Name, p.Count, p.Rate, ms(p.P50), ms(p.P99), commit, cores, per)
	}
	fmt.Fprintf(&b, "(p50, p99: the latency a writer sees, the ACK's for ingest; commit99: the p99 of the phase's commits, raw bbolt's\n"+
		" group commits' Update calls or the checkpoint log's group commits;\n"+
		" cores: the process's CPU time over the phase ÷ its length, receiver and load generator together,\n of %d here; CPU µs: the same per record or message)\n", runtime.NumCPU())
	fmt.Fprintf(&b, "(half load: %.0f msg/s offered, half the %d-connection rate, to the four half-load phases;\n"+
		" checkpoint.Append: the log alone, its writers appending entries made as the MLLP source makes them, no network;\n"+
		" no fsync: not durable, for reference only)\n\n", r.HalfLoad.Offered, r.Conns)
	pad := len(r.IngestMany.Name) + 1
	fmt.Fprintf(&b, "%-*s %.0f msg/s ÷ %s %.0f rec/s = %.2f (goal ≥ %g) %s\n", pad, r.Ingest1.Name+":",
		r.Ingest1.Rate, r.Bolt1.Name, r.Bolt1.Rate, r.OneConn.Value, r.OneConn.Goal, verdict(r.OneConn.Pass))
	fmt.Fprintf(&b, "%-*s %.0f msg/s ÷ %s %.0f rec/s = %.2f (goal ≥ %g) %s\n", pad, r.IngestMany.Name+":",
		r.IngestMany.Rate, r.BoltGroup.Name, r.BoltGroup.Rate, r.ManyConns.Value, r.ManyConns.Goal, verdict(r.ManyConns.Pass))
	fmt.Fprintf(&b, "ACK p99 at half load: %s ms ÷ bbolt commit p99 at the same load %s ms = %.2f (goal ≤ %g) %s\n",
		ms(r.HalfLoad.P99), ms(r.BoltHalf.CommitP99), r.HalfLoadP99.Value, r.HalfLoadP99.Goal, verdict(r.HalfLoadP99.Pass))
	if r.Bolt1.P99 > 0 {
		fmt.Fprintf(&b, "for reference: ACK p99 at half load ÷ %s p99 %s ms = %.2f, against commits of one record\n",
			r.Bolt1.Name, ms(r.Bolt1.P99), float64(r.HalfLoad.P99)/float64(r.Bolt1.P99))
	}
	if r.BoltHalf.CommitP99 > 0 {
		fmt.Fprintf(&b, "for reference: a raw bbolt writer's own p99 at half load %s ms ÷ its commit p99 = %.2f, the wait group commit adds before any network or parsing\n",
			ms(r.BoltHalf.P99), float64(r.BoltHalf.P99)/float64(r.BoltHalf.CommitP99))
	}
	if r.AppendHalf.P99 > 0 && r.BoltHalf.P99 > 0 {
		fmt.Fprintf(&b, "for reference: at half load the log alone's writer p99 %s ms ÷ raw bbolt writers' %s ms = %.2f (the log's share); the ACK p99 ÷ the log alone's = %.2f (the MLLP path's)\n",
			ms(r.AppendHalf.P99), ms(r.BoltHalf.P99), float64(r.AppendHalf.P99)/float64(r.BoltHalf.P99), float64(r.HalfLoad.P99)/float64(r.AppendHalf.P99))
	}
	if r.HalfLoad.CommitP99 > 0 && r.BoltHalf.CommitP99 > 0 {
		fmt.Fprintf(&b, "for reference: ACK p99 at half load ÷ the log's own commit p99 there %s ms = %.2f; its commits' p99 ÷ raw bbolt's at the same load = %.2f\n",
			ms(r.HalfLoad.CommitP99), float64(r.HalfLoad.P99)/float64(r.HalfLoad.CommitP99), float64(r.HalfLoad.CommitP99)/float64(r.BoltHalf.CommitP99))
	}
	if r.HalfFloor.P99 > 0 && r.BoltHalf.CommitP99 > 0 {
		fmt.Fprintf(&b, "for reference: ACK p99 at half load without fsync %s ms ÷ bbolt commit p99 at the same load = %.2f, the floor the MLLP path and this machine set with no disk wait at all\n",
			ms(r.HalfFloor.P99), float64(r.HalfFloor.P99)/float64(r.BoltHalf.CommitP99))
	}
	if r.BoltGroup.Rate > 0 {
		fmt.Fprintf(&b, "for reference: %s %.0f msg/s ÷ %s = %.2f, the most the %d-connection ratio could reach on this machine in this run\n",
			r.Ceiling.Name, r.Ceiling.Rate, r.BoltGroup.Name, r.Ceiling.Rate/r.BoltGroup.Rate, r.Conns)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// percentile returns the nearest-rank p-quantile (0 < p ≤ 1) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// cpuMeter measures the process's CPU time from its start.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	c, ok := processCPU()
	return cpuMeter{c, ok}
}

func (m cpuMeter) used() time.Duration {
	c, ok := processCPU()
	if !m.ok || !ok {
		return 0
	}
	return c - m.start
}

func summarise(lat []time.Duration, elapsed time.Duration) Phase {
	slices.Sort(lat)
	p := Phase{Count: len(lat), Elapsed: elapsed, P50: percentile(lat, 0.50), P99: percentile(lat, 0.99), lat: lat}
	if elapsed > 0 {
		p.Rate = float64(len(lat)) / elapsed.Seconds()
	}
	return p
}

var benchBucket = []byte("bench")

// openBolt opens a bbolt file with the options checkpoint uses.
func openBolt(dir string) (*bolt.DB, error) {
	db, err := bolt.Open(filepath.Join(dir, "baseline.db"), 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(benchBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func seqKey(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}

// putOne is one durable record in its own transaction.
func putOne(db *bolt.DB, seq uint64, payload []byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(benchBucket).Put(seqKey(seq), payload)
	})
}

// boltOneUpdate is raw bbolt, one goroutine, one Update per record.
func boltOneUpdate(ctx context.Context, dir string, payload []byte, d time.Duration) (Phase, error) {
	db, err := openBolt(dir)
	if err != nil {
		return Phase{}, err
	}
	defer db.Close()
	lat := make([]time.Duration, 0, 1<<12)
	cpu := startCPU()
	start := time.Now()
	deadline := start.Add(d)
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		if err := putOne(db, seq, payload); err != nil {
			return Phase{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	p := summarise(lat, time.Since(start))
	p.CPU = cpu.used()
	return p, db.Close()
}

type boltOp struct {
	payload []byte
	err     error
	done    chan struct{}
}

// boltGroupCommit is raw bbolt with n writers sharing commits: a single
// committer goroutine takes whatever is queued (up to 1024, as checkpoint
// does), writes it in one Update and answers every writer. With rate > 0
// the writers are paced like ingestPhase's connections.
func boltGroupCommit(ctx context.Context, dir string, payload []byte, n int, rate float64, d time.Duration) (Phase, error) {
	db, err := openBolt(dir)
	if err != nil {
		return Phase{}, err
	}
	defer db.Close()
	const maxBatch = 1024
	queue := make(chan *boltOp, 4096)
	committed := make(chan struct{})
	var commits []time.Duration
	go func() {
		defer close(committed)
		var seq uint64
		batch := make([]*boltOp, 0, maxBatch)
		for op := range queue {
			batch = append(batch[:0], op)
		fill:
			for len(batch) < maxBatch {
				select {
				case op, ok := <-queue:
					if !ok {
						break fill
					}
					batch = append(batch, op)
				default:
					break fill
				}
			}
			t0 := time.Now()
			err := db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(benchBucket)
				for _, op := range batch {
					seq++
					if err := b.Put(seqKey(seq), op.payload); err != nil {
						return err
					}
				}
				return nil
			})
			commits = append(commits, time.Since(t0))
			for _, op := range batch {
				op.err = err
				close(op.done)
			}
		}
	}()
	p, err := paced(ctx, n, rate, d, func() func() error {
		return func() error {
			op := &boltOp{payload: payload, done: make(chan struct{})}
			queue <- op
			<-op.done
			return op.err
		}
	})
	close(queue)
	<-committed
	if err != nil {
		return Phase{}, err
	}
	p.setCommits(commits)
	return p, db.Close()
}

// appendPhase is the checkpoint log alone: n writers, paced like
// ingestPhase's connections, append ADT^A01 messages as the MLLP source
// does (its record key, content hash, lane and AA acknowledgment). The
// entry is made before the clock starts, so that a latency is Append's
// alone, with no network and no parsing; the log's own commits are the
// phase's commits.
func appendPhase(ctx context.Context, dir string, gen *msgGen, n int, rate float64, d time.Duration) (Phase, error) {
	var commits commitLog
	log, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: discard, OnCommit: commits.observe})
	if err != nil {
		return Phase{}, err
	}
	defer log.Close()
	src := &ehr.MLLPSource{Name: "bench"} // makes the entries, as in startRig
	commits.measuring.Store(true)
	p, err := paced(ctx, n, rate, d, func() func() error {
		raw, _ := gen.next()
		msg, err := hl7.Parse(raw)
		if err != nil {
			return func() error { return err }
		}
		e := src.Entry(msg, raw, time.Now())
		return func() error {
			res, err := log.Append(ctx, e)
			if err == nil && res.Outcome != checkpoint.Appended {
				err = fmt.Errorf("append %s, want appended", res.Outcome)
			}
			return err
		}
	})
	commits.measuring.Store(false)
	if err != nil {
		return Phase{}, err
	}
	p.setCommits(commits.take())
	return p, log.Close()
}

// paced runs n writers for d, on newPacer's schedule: each gets its next
// operation from prepare, off the clock, and times calling it. It returns
// their latencies with the process's CPU time over the span; a writer
// whose operation fails stops, and its error is returned.
func paced(ctx context.Context, n int, rate float64, d time.Duration, prepare func() func() error) (Phase, error) {
	lats := make([][]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	cpu := startCPU()
	start := time.Now()
	deadline := start.Add(d)
	for i := range n {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<10)
			defer func() { lats[i] = lat }()
			pace := newPacer(i, n, rate, start, deadline)
			for pace.wait(ctx) {
				op := prepare()
				t0 := time.Now()
				if err := op(); err != nil {
					errs[i] = err
					return
				}
				lat = append(lat, time.Since(t0))
				pace.answered()
			}
		})
	}
	wg.Wait()
	elapsed, used := time.Since(start), cpu.used()
	if err := errors.Join(errs...); err != nil {
		return Phase{}, err
	}
	p := summarise(slices.Concat(lats...), elapsed)
	p.Offered, p.CPU = rate, used
	return p, nil
}

// commitLog collects the durations of a checkpoint log's commits
// (checkpoint.Options.OnCommit) while measuring is set.
type commitLog struct {
	measuring atomic.Bool
	mu        sync.Mutex
	d         []time.Duration
}

func (c *commitLog) observe(_ int, d time.Duration) {
	if !c.measuring.Load() {
		return
	}
	c.mu.Lock()
	c.d = append(c.d, d)
	c.mu.Unlock()
}

// take returns the durations collected and starts afresh.
func (c *commitLog) take() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.d
	c.d = nil
	return d
}

// pacer spaces the sends of one of n connections or writers: with
// rate > 0, the n together offer rate per second, each on its own Poisson
// schedule; otherwise each sends as soon as its last send was answered.
type pacer struct {
	rng      *rand.Rand
	gap      float64 // mean seconds between this one's sends
	next     time.Time
	deadline time.Time
}

func newPacer(i, n int, rate float64, start, deadline time.Time) *pacer {
	p := &pacer{next: start, deadline: deadline}
	if rate > 0 {
		p.rng = rand.New(rand.NewPCG(uint64(i), 0x5eed))
		p.gap = float64(n) / rate
		p.next = start.Add(p.interval(p.rng.Float64()))
	}
	return p
}

func (p *pacer) interval(f float64) time.Duration {
	return time.Duration(f * p.gap * float64(time.Second))
}

// wait waits until the next send is due and reports whether to send it:
// not once the deadline has passed or ctx is done.
func (p *pacer) wait(ctx context.Context) bool {
	if p.rng != nil {
		if !p.next.Before(p.deadline) {
			return false
		}
		if w := time.Until(p.next); w > 0 {
			sleep(ctx, w)
		}
		p.next = p.next.Add(p.interval(p.rng.ExpFloat64()))
	}
	return ctx.Err() == nil && time.Now().Before(p.deadline)
}

// answered notes that a send was answered. Behind schedule, the pacer
// carries on from now rather than sending a burst to catch up.
func (p *pacer) answered() {
	if now := time.Now(); p.rng != nil && p.next.Before(now) {
		p.next = now
	}
}

var discard = slog.New(slog.DiscardHandler)

// rig is the ingest path under test: checkpoint log, MLLPSource and an MLLP
// server on a loopback port.
type rig struct {
	log *checkpoint.Log
	// commits records the log's commits of the measured part of a phase.
	commits commitLog
	src     *ehr.MLLPSource
	srv     *mllp.Server
	addr    string
	served  chan struct{}

	closeOnce sync.Once
	closeErr  error
}

func startRig(dir string, conns int, noSync bool) (*rig, error) {
	r := &rig{served: make(chan struct{})}
	log, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: discard, UnsafeNoSync: noSync, OnCommit: r.commits.observe})
	if err != nil {
		return nil, err
	}
	src := &ehr.MLLPSource{Name: "bench", Log: log, Logger: discard}
	srv := &mllp.Server{Handler: src, Logger: discard, MaxConnections: max(256, 2*conns)}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		log.Close()
		return nil, err
	}
	r.log, r.src, r.srv, r.addr = log, src, srv, l.Addr().String()
	go func() {
		defer close(r.served)
		_ = srv.Serve(l)
	}()
	return r, nil
}

// close stops the server, waiting for its connections, then the log.
func (r *rig) close() error {
	r.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := r.srv.Shutdown(ctx)
		<-r.served
		r.closeErr = errors.Join(err, r.log.Close())
	})
	return r.closeErr
}

// sender is one connection of the load generator. It is lean on purpose,
// like wrk against a web server: on a small machine the senders share the
// CPUs with the receiver under test, so they frame each message into a
// reused buffer and check the acknowledgment by its bytes (MSA|AA| and the
// control id) instead of parsing it. The receiver's work is unchanged.
type sender struct {
	nc  net.Conn
	rd  *mllp.Reader
	buf []byte
}

func (r *rig) dial(ctx context.Context) (*sender, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, err
	}
	return &sender{nc: nc, rd: mllp.NewReader(nc, 1<<20)}, nil
}

func (s *sender) Close() error { return s.nc.Close() }

// send sends one message and insists on its AA, within the deadline.
func (s *sender) send(msg, ctrl []byte, deadline time.Time) error {
	_ = s.nc.SetDeadline(deadline)
	s.buf = mllp.AppendFrame(s.buf[:0], msg)
	if _, err := s.nc.Write(s.buf); err != nil {
		return err
	}
	ack, err := s.rd.ReadFrame()
	if err != nil {
		return err
	}
	i := bytes.Index(ack, []byte("\rMSA|"))
	if i < 0 {
		return errors.New("acknowledgment without MSA")
	}
	msa := ack[i+5:]
	if !bytes.HasPrefix(msa, []byte("AA|")) || !bytes.HasPrefix(msa[3:], ctrl) {
		end := bytes.IndexByte(msa, '\r')
		if end < 0 || end > 40 {
			end = min(len(msa), 40)
		}
		return fmt.Errorf("answered %q, want AA for %s", msa[:end], ctrl)
	}
	if rest := msa[3+len(ctrl):]; len(rest) > 0 && rest[0] != '|' && rest[0] != '\r' {
		return fmt.Errorf("acknowledged another control id, want %s", ctrl)
	}
	return nil
}

// ingestPhase sends messages over conns connections for d. With rate > 0
// the connections together offer rate messages per second, each on its
// own Poisson schedule; otherwise each sends its next message as soon as
// the last one is acknowledged. Every connection first sends one message
// outside the measurement, to connect. Afterwards the log must hold
// exactly the messages acknowledged.
func ingestPhase(ctx context.Context, dir string, gen *msgGen, conns int, d time.Duration, rate float64, noSync bool) (Phase, error) {
	r, err := startRig(dir, conns, noSync)
	if err != nil {
		return Phase{}, err
	}
	defer r.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	begin := make(chan struct{})
	var ready, done sync.WaitGroup
	var start time.Time
	lats := make([][]time.Duration, conns)
	errs := make([]error, conns)
	var sent atomic.Int64
	for i := range conns {
		ready.Add(1)
		done.Go(func() {
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			c, err := r.dial(wctx)
			wcancel()
			if err == nil {
				defer c.Close()
				msg, ctrl := gen.next()
				err = c.send(msg, ctrl, time.Now().Add(10*time.Second))
			}
			ready.Done()
			if err != nil {
				errs[i] = fmt.Errorf("connecting: %w", err)
				cancel()
				return
			}
			sent.Add(1)
			<-begin
			pace := newPacer(i, conns, rate, start, start.Add(d))
			lat := make([]time.Duration, 0, 1<<10)
			defer func() { lats[i] = lat }()
			for pace.wait(ctx) {
				msg, ctrl := gen.next()
				t0 := time.Now()
				if err := c.send(msg, ctrl, start.Add(d+30*time.Second)); err != nil {
					if ctx.Err() == nil {
						errs[i] = err
						cancel()
					}
					return
				}
				lat = append(lat, time.Since(t0))
				sent.Add(1)
				pace.answered()
			}
		})
	}
	ready.Wait()
	cpu := startCPU()
	start = time.Now()
	r.commits.measuring.Store(true)
	close(begin)
	done.Wait()
	elapsed, used := time.Since(start), cpu.used()
	r.commits.measuring.Store(false)
	if err := errors.Join(errs...); err != nil {
		return Phase{}, err
	}
	if err := ctx.Err(); err != nil {
		return Phase{}, err
	}
	p := summarise(slices.Concat(lats...), elapsed)
	p.Offered, p.CPU = rate, used
	p.setCommits(r.commits.take())
	// Every AA must stand for a record in the log, and nothing else may be.
	st, err := r.log.Stats()
	if err != nil {
		return Phase{}, err
	}
	if got, want := st.States[checkpoint.Received], sent.Load(); got != want {
		return Phase{}, fmt.Errorf("log holds %d records, %d messages were acknowledged", got, want)
	}
	if n := r.src.Duplicates.Load() + r.src.Conflicts.Load() + r.src.Rejected.Load() + r.src.Errored.Load(); n != 0 {
		return Phase{}, fmt.Errorf("%d messages were not accepted as new", n)
	}
	return p, r.close()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// msgGen makes distinct ADT^A01 messages: a unique control id each, and
// patients spread over many identifiers. Messages are cut from a pool of
// prepared variants with the control id and the MRN patched in, so that
// making one costs the senders next to nothing: on a small machine they
// share the CPUs with the receiver under test.
type msgGen struct {
	plen int // length of the control id prefix
	pool []msgTemplate
	n    atomic.Uint64
}

type msgTemplate struct {
	b        []byte
	ctrl, id int // offsets of the control id's and the MRN's digits
}

const (
	patients   = 50000
	variants   = 256
	ctrlDigits = 9
	mrnDigits  = 7
)

var (
	surnames = []string{"SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "MARTINEZ", "HERNANDEZ", "LOPEZ", "WILSON", "ANDERSON", "TAYLOR", "MOORE", "JACKSON"}
	given    = []string{"JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "ELIZABETH", "WILLIAM", "BARBARA", "RICHARD", "SUSAN"}
	streets  = []string{"MAIN ST", "OAK AVE", "PINE RD", "MAPLE DR", "CEDAR LN", "ELM ST", "LAKE VIEW BLVD", "HILLCREST CT"}
	wards    = []string{"4WEST", "5EAST", "ICU", "CARDIO", "3NORTH", "MATERNITY"}
)

// newMsgGen prepares the variants; prefix starts every control id.
func newMsgGen(prefix string) *msgGen {
	ts := time.Now().Format("20060102150405")
	g := &msgGen{plen: len(prefix), pool: make([]msgTemplate, variants)}
	ctrl, mrn := strings.Repeat("#", ctrlDigits), strings.Repeat("@", mrnDigits)
	for k := range g.pool {
		raw := adtA01(uint64(k), prefix+ctrl, "MRN"+mrn, ts)
		t := msgTemplate{b: []byte(raw), ctrl: strings.Index(raw, ctrl), id: strings.Index(raw, mrn)}
		g.pool[k] = t
	}
	return g
}

// next returns a new message, about 1.8 KB, and its control id: variant i
// mod 256, control id prefix+i, and one of 50,000 MRNs, visited in a
// scattered order.
func (g *msgGen) next() (msg, ctrl []byte) {
	i := g.n.Add(1)
	t := &g.pool[i%variants]
	b := append([]byte(nil), t.b...)
	putDigits(b[t.ctrl:t.ctrl+ctrlDigits], i)
	putDigits(b[t.id:t.id+mrnDigits], (i*2654435761)%patients)
	return b, b[t.ctrl-g.plen : t.ctrl+ctrlDigits]
}

// putDigits writes n in decimal, zero-padded, over dst.
func putDigits(dst []byte, n uint64) {
	for j := len(dst) - 1; j >= 0; j-- {
		dst[j] = byte('0' + n%10)
		n /= 10
	}
}

// adtA01 is one admission with the usual segments of a real feed.
func adtA01(k uint64, ctrl, mrn, ts string) string {
	sur, giv := surnames[k%uint64(len(surnames))], given[(k/16)%uint64(len(given))]
	sex := "FM"[k%2 : k%2+1]
	dob := fmt.Sprintf("19%02d%02d%02d", 30+k%70, 1+k%12, 1+k%28)
	addr := fmt.Sprintf("%d %s^APT %d^SPRINGFIELD^IL^627%02d^USA^H", 10+k*37%9000, streets[k%uint64(len(streets))], 1+k%40, k%100)
	phone := fmt.Sprintf("^PRN^PH^^1^217^555%04d", k*7919%10000)
	ward := wards[k%uint64(len(wards))]
	var b strings.Builder
	fmt.Fprintf(&b, "MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|%s||ADT^A01^ADT_A01|%s|P|2.5.1\r", ts, ctrl)
	fmt.Fprintf(&b, "EVN|A01|%s|||U0042^NURSE^ANNA^^^^^^GENHOSP|%s\r", ts, ts)
	fmt.Fprintf(&b, "PID|1||%s^^^GENHOSP^MR~%03d-%02d-%04d^^^SSA^SS||%s^%s^%c^^^^L||%s|%s|||%s||%s~^NET^Internet^%s.%s@example.org|^WPN^PH^^1^217^5550999|EN|M|CHR|ACCT%07d^^^GENHOSP^AN|||N||||||N\r",
		mrn, k%1000, k%100, k*7%10000, sur, giv, 'A'+rune(k%26), dob, sex, addr, phone, strings.ToLower(giv), strings.ToLower(sur), k*104729%10000000)
	b.WriteString("PD1|||GENERAL HOSPITAL^^10001|1234567890^PRIMARY^PAT^^^DR^MD^^^^^^NPI\r")
	fmt.Fprintf(&b, "NK1|1|%s^SPOUSE^^^^^L|SPO^Spouse^HL70063|%s|%s||EC^Emergency Contact^HL70131\r", sur, addr, phone)
	fmt.Fprintf(&b, "PV1|1|I|%s^%d^B^GENHOSP^^^^%s|E|||1234567890^ATTENDING^ALAN^^^DR^MD^^^^^^NPI|2345678901^REFERRING^RUTH^^^DR^MD^^^^^^NPI||MED||||7|||1234567890^ATTENDING^ALAN^^^DR^MD^^^^^^NPI|IN|VN%08d^^^GENHOSP^VN|||||||||||||||||||||||||%s\r",
		ward, 100+k%400, ward, k*15485863%100000000, ts)
	b.WriteString("PV2|||^CHEST PAIN, UNSPECIFIED||||||20260105|3|||||||||||N\r")
	b.WriteString("AL1|1|DA|70618^PENICILLIN^RXNORM|SV|HIVES\r")
	b.WriteString("AL1|2|FA|256349002^PEANUT^SCT|MO|ANAPHYLAXIS\r")
	fmt.Fprintf(&b, "DG1|1||R07.9^Chest pain, unspecified^I10||%s|A\r", ts)
	fmt.Fprintf(&b, "OBX|1|NM|8867-4^Heart rate^LN||%d|/min^beats per minute^UCUM|60-100|N|||F|||%s\r", 55+k%60, ts)
	fmt.Fprintf(&b, "OBX|2|NM|8480-6^Systolic blood pressure^LN||%d|mm[Hg]^mmHg^UCUM|90-140|N|||F|||%s\r", 95+k%70, ts)
	fmt.Fprintf(&b, "OBX|3|NM|29463-7^Body weight^LN||%d.%d|kg^kilogram^UCUM||N|||F|||%s\r", 45+k%80, k%10, ts)
	fmt.Fprintf(&b, "GT1|1||%s^%s^^^^^L||%s|%s||%s|%s||SEL^Self^HL70063\r", sur, giv, addr, phone, dob, sex)
	fmt.Fprintf(&b, "IN1|1|BCBS01^Blue Cross PPO^99|54321^^^PAYER^NIIP|BLUE CROSS BLUE SHIELD IL|PO BOX 1364^^CHICAGO^IL^60690^USA||^WPN^PH^^1^800^5551234|GRP%04d|ACME CORP||||||||%s^%s^^^^^L|SEL^Self^HL70063|%s|%s|||1||||||||||||||XYZ%09d\r",
		k*31%5000, sur, giv, dob, addr, k*1299709%1000000000)
	return b.String()
}
