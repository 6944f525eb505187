package daemon

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/internal/admin"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/crms"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/writeback"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// crm is the CRM side: the connector internal/crms opened (with the
// embedded sandbox when configured) and the pipeline that feeds them from
// the checkpoint log.
type crm struct {
	conn    *crms.CRM // the connector: kind, sink, note reader, counters
	pipe    *pipeline.Pipeline
	cron    *cron.Cron
	cancel  context.CancelFunc
	stopped chan struct{}
	failed  atomic.Bool // the pipeline panicked: nothing is sent on stop
	wb      *wbStatus   // nil without write-back
}

// wbStatus counts the write-back's polls for the admin console.
type wbStatus struct {
	schedule, target          string
	polls, pollsFailed, found atomic.Int64
	mu                        sync.Mutex
	lastPoll, lastOK          time.Time
	lastErr                   string
}

// polled records a poll's outcome; err's text names no patient (the
// note reader's errors carry CRM codes and object names).
func (w *wbStatus) polled(n int, err error) {
	w.polls.Add(1)
	w.found.Add(int64(n))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastPoll = time.Now()
	if err != nil {
		w.pollsFailed.Add(1)
		w.lastErr = err.Error()
		return
	}
	w.lastOK = w.lastPoll
}

func (w *wbStatus) status() *admin.Writeback {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return &admin.Writeback{Schedule: w.schedule, Target: w.target, Polls: w.polls.Load(), PollsFailed: w.pollsFailed.Load(),
		Found: w.found.Load(), LastPoll: w.lastPoll, LastPollOK: w.lastOK, LastError: w.lastErr}
}

// writebackTargetName names the write-back's EHR target for the console.
func writebackTargetName(t config.WritebackTarget) string {
	switch {
	case t.FHIR != nil:
		return "FHIR " + t.FHIR.BaseURL
	case t.MLLP != "":
		return "MLLP " + t.MLLP
	}
	return "file drop " + t.Dir
}

// startCRM builds the connector (and sandbox) and starts the pipeline;
// nil config gives nil.
// A panic in the pipeline or a write-back poll is reported on errc.
func startCRM(cfg *config.Config, cp *checkpoint.Log, maps func() *mappings.Set, patients func(string) mappings.PatientResolver, errc chan<- error, log *slog.Logger) (*crm, error) {
	cc := cfg.CRM
	if cc == nil {
		return nil, nil
	}
	crmLog := log.With("component", "crm")
	conn, err := crms.Open(cc, crmLog)
	if err != nil {
		return nil, err
	}
	c := &crm{conn: conn, stopped: make(chan struct{})}
	var notes pipeline.NoteHandler
	var source *writeback.Source
	echo := ""
	if wb := cfg.Writeback; wb != nil {
		h, src, err := newWriteback(wb, cfg.DataDir, conn.Notes, cp, log)
		if err != nil {
			c.close()
			return nil, err
		}
		notes, source = h, src
		echo = h.DocPrefix()
	}
	var waker *writeback.HeldWaker
	var applied func()
	if source != nil {
		waker = &writeback.HeldWaker{Log: cp, Logger: log.With("component", "writeback")}
		applied = waker.Applied
	}
	popts := pipeline.Options{Log: cp, Mappings: maps, Sink: conn.Sink, Logger: log, Notes: notes, EchoPrefix: echo,
		Applied: applied, Patients: patients}
	cc.Pipeline.Apply(&popts)
	c.pipe = pipeline.New(popts)
	if waker != nil {
		waker.Notify = c.pipe.Notify
	}
	if h, ok := notes.(*writeback.Handler); ok {
		h.Backoff = c.pipe.Backoff // notes retry as CRM records do
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if source != nil {
		source.Appended = c.pipe.Notify
		c.cron = cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
		wbLog := log.With("component", "writeback")
		sched, err := config.ParseSchedule(cfg.Writeback.Schedule)
		if err != nil {
			cancel()
			c.close()
			return nil, fmt.Errorf("writeback.schedule: %w", err)
		}
		c.wb = &wbStatus{schedule: cfg.Writeback.Schedule, target: writebackTargetName(cfg.Writeback.Target)}
		c.cron.Schedule(sched, cron.FuncJob(func() {
			guard(wbLog, errc, "write-back poll", func() {
				if cp.StorageProblem() != nil {
					// What the poll found could not be stored: no
					// CRM request is spent on it. storageLoop
					// reports the problem; the first poll after it
					// ends catches up.
					return
				}
				n, err := source.Poll(ctx)
				if ctx.Err() == nil {
					c.wb.polled(n, err)
				}
				if err != nil && ctx.Err() == nil {
					wbLog.Warn("polling the CRM for notes failed; will try again", "err", err)
				} else if n > 0 {
					wbLog.Info("notes to file in the EHR", "versions", n)
				}
			})
		}))
		c.cron.Start()
	}
	go func() {
		defer close(c.stopped)
		if guard(crmLog, errc, "pipeline", func() { _ = c.pipe.Run(ctx) }) {
			c.failed.Store(true)
		}
	}()
	return c, nil
}

// WritebackConfig is the write-back's configuration as the config file
// gives it (names left empty take the CRM's defaults where they are used;
// Config.WithDefaults fills them in). The daemon and crm check read it
// alike.
func WritebackConfig(wb *config.WritebackConfig) writeback.Config {
	c := wb.Config
	c.AEMaxAttempts = wb.Target.AEMaxAttempts
	return c
}

// newWriteback builds the note handler and poller.
func newWriteback(wb *config.WritebackConfig, dataDir string, notesCRM connectors.NoteReader, cp *checkpoint.Log, log *slog.Logger) (*writeback.Handler, *writeback.Source, error) {
	wcfg := WritebackConfig(wb)
	mdm, err := writeback.LoadMDM(wb.MDMMapping, mappings.Options{Zone: time.UTC})
	if err != nil {
		return nil, nil, fmt.Errorf("writeback.mdm_mapping does not lint:\n%w", err)
	}
	wcfg.MDM = mdm
	if wb.AuthorsFile != "" {
		authors, err := readAuthors(wb.AuthorsFile)
		if err != nil {
			return nil, nil, err
		}
		wcfg.Authors = authors
	}
	var target connectors.EHRTarget
	if f := wb.Target.FHIR; f != nil {
		ft, err := ehr.NewFHIRTarget(f.FHIRTargetConfig)
		if err != nil {
			return nil, nil, fmt.Errorf("writeback.target.fhir: %w", err)
		}
		target = ft
	} else if wb.Target.MLLP != "" {
		mt, err := newMLLPTarget(wb.Target, log.With("component", "writeback"))
		if err != nil {
			return nil, nil, err
		}
		target = mt
	} else {
		target = &ehr.FileDrop{FileDropConfig: wb.Target.FileDropConfig, Logger: log.With("component", "writeback")}
	}
	h := &writeback.Handler{Cfg: wcfg, CRM: notesCRM, Target: target, Log: cp, Logger: log.With("component", "writeback")}
	src := &writeback.Source{Cfg: wcfg, CRM: notesCRM, Log: cp, WatermarkFile: filepath.Join(dataDir, "writeback.watermark"), Logger: log}
	return h, src, nil
}

// readAuthors reads "crm_user_id,provider_id" lines.
func readAuthors(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("writeback.authors_file: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment, r.FieldsPerRecord = '#', 2
	out := map[string]string{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("writeback.authors_file: %w", err)
		}
		out[strings.TrimSpace(rec[0])] = strings.TrimSpace(rec[1])
	}
}

// notify wakes the pipeline; safe on a nil crm.
func (c *crm) notify() {
	if c != nil {
		c.pipe.Notify()
	}
}

// drain lets the pipeline send what is ready (received, in progress) for
// at most d after intake has closed, so that a stop leaves as little as
// possible behind; the rest stays in the log for the next start.
func (c *crm) drain(cp *checkpoint.Log, d time.Duration, log *slog.Logger) {
	if c == nil || d <= 0 || c.failed.Load() {
		return
	}
	deadline := time.Now().Add(d)
	for {
		st, err := cp.Stats()
		if err != nil {
			return
		}
		left := st.States[checkpoint.Received] + st.States[checkpoint.InProgress]
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			log.Warn("stopping with records not yet sent; they are sent at the next start", "records", left)
			return
		}
		c.pipe.Notify()
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the pipeline (its current batch settles) and the sandbox.
func (c *crm) stop() {
	if c == nil {
		return
	}
	if c.cancel != nil {
		c.cancel() // ends a poll under way and the pipeline's next round
	}
	if c.cron != nil {
		<-c.cron.Stop().Done()
	}
	if c.cancel != nil {
		<-c.stopped
	}
	c.close()
}

func (c *crm) close() { _ = c.conn.Close() }
