package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// MappingOptions returns the mapping load options a config gives.
func MappingOptions(cfg *config.Config) (mappings.Options, error) {
	opts := mappings.Options{Zone: time.Local}
	if tz := cfg.Mappings.Timezone; tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return opts, fmt.Errorf("mappings.timezone: unknown time zone")
		}
		opts.Zone = loc
	}
	if len(cfg.Mappings.Schemas) > 0 {
		s, err := mappings.LoadSchemas(cfg.Mappings.Schemas)
		if err != nil {
			return opts, err
		}
		opts.Schemas = s
	}
	return opts, nil
}

// LoadMappings compiles the config's mapping set (and any extra paths).
// A config without mapping paths gives an empty set.
func LoadMappings(cfg *config.Config, extra ...string) (*mappings.Set, error) {
	opts, err := MappingOptions(cfg)
	if err != nil {
		return nil, err
	}
	paths := append(append([]string(nil), cfg.Mappings.Paths...), extra...)
	if len(paths) == 0 {
		return &mappings.Set{}, nil
	}
	return mappings.Load(paths, opts)
}

// mappingSet holds the running mapping set and reloads it. A set that does
// not lint is refused: the running one stays, and the refusal is logged
// and counted for /metrics.
type mappingSet struct {
	cfg *config.Config
	log *slog.Logger

	cur atomic.Pointer[mappings.Set]

	mu          sync.Mutex // serialises reloads
	loaded      atomic.Int64
	refused     atomic.Int64
	lastOK      atomic.Bool
	lastProblem atomic.Pointer[string]
	lastReload  atomic.Int64 // unix seconds of the last successful load
	stamp       string       // the files' names, sizes and times at the last load
}

// LoadInbound loads the config's mapping set, which maps what the EHR
// sends: a mapping that builds HL7 for the EHR does not belong in it.
func LoadInbound(cfg *config.Config) (*mappings.Set, error) {
	s, err := LoadMappings(cfg)
	if err != nil {
		return nil, err
	}
	for _, m := range s.Mappings {
		if m.Output() == mappings.OutputHL7 {
			return nil, mappings.Problems{{File: m.File, Line: 1, Col: 1,
				Msg: "output: hl7 builds messages for the EHR; name it in writeback.mdm_mapping, not mappings.paths"}}
		}
	}
	return s, nil
}

func newMappingSet(cfg *config.Config, log *slog.Logger) (*mappingSet, error) {
	ms := &mappingSet{cfg: cfg, log: log.With("component", "mappings")}
	s, err := LoadInbound(cfg)
	if err != nil {
		return nil, fmt.Errorf("mappings do not lint:\n%w", err)
	}
	ms.install(s)
	ms.stamp, _ = ms.fileStamp()
	return ms, nil
}

// Current returns the running set.
func (ms *mappingSet) Current() *mappings.Set { return ms.cur.Load() }

func (ms *mappingSet) install(s *mappings.Set) {
	ms.cur.Store(s)
	ms.loaded.Add(1)
	ms.lastOK.Store(true)
	ms.lastReload.Store(time.Now().Unix())
	ms.lastProblem.Store(nil)
	ms.logLint(s)
}

// logLint logs the set's lint warnings (keys whose parts run together,
// identifiers without namespace, blank fallbacks): they do not stop the
// set from loading, so an admin who never runs `ehrbridge lint` learns of
// them here. They name files, lines and expressions, never patient data.
func (ms *mappingSet) logLint(s *mappings.Set) {
	w := s.Lint()
	if len(w) == 0 {
		return
	}
	const shown = 10
	for i, p := range w {
		if i == shown {
			ms.log.Warn("more mapping lint warnings; run `ehrbridge lint` for all", "more", len(w)-shown)
			break
		}
		ms.log.Warn("mapping lint warning", "warning", p.String())
	}
}

// Reload re-reads the mapping files. On problems the running set stays and
// the problems are returned (they name files and lines, not patient data).
func (ms *mappingSet) Reload(why string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	stamp, _ := ms.fileStamp()
	s, err := LoadInbound(ms.cfg)
	if err != nil {
		ms.refused.Add(1)
		ms.lastOK.Store(false)
		msg := err.Error()
		ms.lastProblem.Store(&msg)
		var ps mappings.Problems
		n := 1
		if errors.As(err, &ps) {
			n = len(ps)
		}
		ms.log.Error("mapping reload refused; the running mappings stay in use", "trigger", why, "problems", n, "err", err)
		ms.stamp = stamp
		return err
	}
	ms.install(s)
	ms.stamp = stamp
	ms.log.Info("mappings reloaded", "trigger", why, "mappings", len(s.Mappings))
	return nil
}

// fileStamp summarises the mapping files (names, sizes, modification
// times, and the table files beside them) so that a watcher can tell a
// change.
func (ms *mappingSet) fileStamp() (string, error) {
	h := ""
	for _, p := range ms.cfg.Mappings.Paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			h += fmt.Sprintf("%s|%d|%d\n", path, info.Size(), info.ModTime().UnixNano())
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return h, err
		}
	}
	return h, nil
}

// watch polls the mapping files every interval and reloads on a change,
// until stop closes.
func (ms *mappingSet) watch(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		stamp, err := ms.fileStamp()
		ms.mu.Lock()
		changed := err == nil && stamp != ms.stamp
		ms.mu.Unlock()
		if changed {
			_ = ms.Reload("file change")
		}
	}
}

// lane is the ingest's lane key from the mappings (see mappings.Set.Lane);
// "" lets the source's default (PID-3, first repetition) apply.
func (ms *mappingSet) lane(m *hl7.Message) string {
	s := ms.Current()
	if s == nil || len(s.Mappings) == 0 {
		return ""
	}
	l, err := s.Lane(mappings.Input{HL7: m})
	if err != nil {
		return ""
	}
	return l
}
