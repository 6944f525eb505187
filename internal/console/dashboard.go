package console

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Overview is the daemon's parts as the dashboard shows them: counts,
// states, names and addresses, never message data.
type Overview struct {
	Ready bool
	// StorageProblem says why the data directory cannot be written.
	StorageProblem string
	// Sources are where records come from (MLLP listeners, FHIR sources,
	// the write-back poller); Destinations where they go (the CRM, the EHR
	// target of notes).
	Sources, Destinations []Endpoint
	// Mappings is the running set.
	Mappings MappingsInfo
	// Insecure names the plaintext opt-outs in use.
	Insecure []string
}

// MappingsInfo is the running mapping set's state.
type MappingsInfo struct {
	Names       []string
	LastOK      bool
	LastProblem string // file:line:col messages of a refused reload
}

// Endpoint is one source or destination on the dashboard.
type Endpoint struct {
	// ID keys its rates from one sample to the next ("mllp/adt").
	ID                  string
	Name, Kind, Address string
	// LogSource is the name its records carry in the log (Record.Source):
	// the records it stored, or, for a destination, the records it takes
	// ("" for the CRM, which takes them all).
	LogSource string
	// Counters since the daemon started; those with Rate get per-minute
	// rates over the last minutes.
	Counters []Counter
	// State is a word for its health ("ok", "failing", "breaker open",
	// "paused"); Problem marks it as needing attention.
	State   string
	Problem bool
	// LastError is its last error, free of patient data.
	LastError string
	// Notes are further facts ("API 1,200 of 15,000 today", "next probe
	// 12:00:05Z").
	Notes []string
}

// Counter is one count of an endpoint's.
type Counter struct {
	Name  string
	Value int64
	Rate  bool
}

// sampleEvery is how often Run samples the counters; rateWindows the
// windows rates are shown over.
const sampleEvery = 10 * time.Second

var rateWindows = []time.Duration{time.Minute, 5 * time.Minute}

type sample struct {
	at     time.Time
	values map[string]int64 // endpoint ID + "/" + counter name
}

// sampler keeps the last 15 minutes of counter samples.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	now     func() time.Time
}

func newSampler(now func() time.Time) *sampler { return &sampler{now: now} }

func (s *sampler) add(o Overview) {
	v := map[string]int64{}
	for _, e := range append(append([]Endpoint(nil), o.Sources...), o.Destinations...) {
		for _, c := range e.Counters {
			if c.Rate {
				v[e.ID+"/"+c.Name] = c.Value
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.samples = append(s.samples, sample{now, v})
	for len(s.samples) > 0 && now.Sub(s.samples[0].at) > 15*time.Minute {
		s.samples = s.samples[1:]
	}
}

// rate is a counter's increase per minute over the window ending now (its
// current value given), from the oldest sample inside the window; ok false
// without a sample old enough to say (at least a fifth of the window).
func (s *sampler) rate(key string, current int64, window time.Duration) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, smp := range s.samples {
		age := now.Sub(smp.at)
		if age > window+sampleEvery/2 {
			continue
		}
		if age < window/5 {
			return 0, false
		}
		old, ok := smp.values[key]
		if !ok || current < old {
			return 0, false // a counter that restarted says nothing
		}
		return float64(current-old) / age.Minutes(), true
	}
	return 0, false
}

// overview reads the daemon's parts (the log's counts only without them).
func (c *Console) overview() Overview {
	if c.opts.Overview == nil {
		return Overview{Ready: true}
	}
	return c.opts.Overview()
}

type stateCount struct {
	Name  string
	Count int64
}

// dashData is the dashboard's: the parts with their rates, and the log.
type dashData struct {
	Overview
	Sources, Destinations []endpointView
	States                []stateCount
	Conflicts, Backlog    int64
	OldestPending         time.Time
	OldestAge             string
	StatsProblem          string
	Now                   time.Time
	Windows               []string
}

type endpointView struct {
	Endpoint
	Rows []counterRow
	// Log is its records' states in the log (sources only; nil when it
	// has nothing outstanding).
	Log *sourceLog
}

type counterRow struct {
	Name  string
	Value int64
	Rates []string // per window: "12.0/min", or "–" while there is no sample old enough
}

func (c *Console) dashboardData() dashData {
	o := c.overview()
	now := c.opts.Now()
	d := dashData{Overview: o, Now: now}
	for _, w := range rateWindows {
		d.Windows = append(d.Windows, "per min, last "+shortDuration(w))
	}
	st, err := c.opts.Log.Stats()
	if err != nil {
		d.StatsProblem = "the log's counts cannot be read: " + err.Error()
	} else {
		for _, s := range checkpoint.States {
			d.States = append(d.States, stateCount{s.String(), st.States[s]})
		}
		d.Conflicts = st.Conflicts
		d.Backlog = st.States[checkpoint.Received] + st.States[checkpoint.InProgress] + st.States[checkpoint.Retrying]
		if !st.OldestPending.IsZero() {
			d.OldestPending = st.OldestPending
			d.OldestAge = shortDuration(now.Sub(st.OldestPending))
		}
	}
	bySource := c.sourceStates()
	for _, e := range o.Sources {
		ev := c.endpointView(e)
		ev.Log = bySource[e.LogSource]
		d.Sources = append(d.Sources, ev)
	}
	for _, e := range o.Destinations {
		ev := c.endpointView(e)
		if e.LogSource != "" {
			ev.Log = bySource[e.LogSource]
		}
		d.Destinations = append(d.Destinations, ev)
	}
	return d
}

func (c *Console) endpointView(e Endpoint) endpointView {
	ev := endpointView{Endpoint: e}
	// Counts with rates first, then the gauges (connections open).
	counters := slices.Clone(e.Counters)
	slices.SortStableFunc(counters, func(a, b Counter) int {
		switch {
		case a.Rate == b.Rate:
			return 0
		case a.Rate:
			return -1
		}
		return 1
	})
	for _, ctr := range counters {
		row := counterRow{Name: ctr.Name, Value: ctr.Value}
		if ctr.Rate {
			for _, w := range rateWindows {
				if r, ok := c.rates.rate(e.ID+"/"+ctr.Name, ctr.Value, w); ok {
					row.Rates = append(row.Rates, formatRate(r))
				} else {
					row.Rates = append(row.Rates, "–")
				}
			}
		}
		ev.Rows = append(ev.Rows, row)
	}
	return ev
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, "dashboard", "Dashboard", "dashboard", c.dashboardData())
}

// dashboardLive is the dashboard's live part, fetched by console.js.
func (c *Console) dashboardLive(w http.ResponseWriter, r *http.Request, s *session) {
	r.Header.Set("X-Console-Fetch", "1")
	c.render(w, r, s, "dashboard", "Dashboard", "dashboard", c.dashboardData())
}
