package admin

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
)

// metricsHandler serves /metrics from a registry of the endpoint's own
// (not the global default, so two daemons in one test process do not
// meet): the daemon's collector, which reads the same status /status reads
// at scrape time, and the Go runtime and process collectors (heap,
// goroutines, GC, file descriptors, resident memory). Labels carry names
// an admin chose (sources) and fixed words, never message content.
func metricsHandler(a *Server, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		daemonCollector{a},
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails leaves out its series, not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	})
}

// desc is a metric family of the daemon's.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The daemon's metric families. Their names, types and labels are those
// of the hand-written exposition they replace (testdata/metrics-series.golden).
var (
	storageWritableDesc   = desc("ehrbridge_storage_writable", "Whether the checkpoint log's last write succeeded (0: disk full, over quota or read-only; messages are answered AE).")
	mappingsLoadedDesc    = desc("ehrbridge_mappings_loaded", "Mappings in the running set.")
	mappingReloadsDesc    = desc("ehrbridge_mapping_reloads_total", "Mapping set loads, by result; a refused set leaves the running one in place.", "result")
	mappingLastOKDesc     = desc("ehrbridge_mapping_last_reload_ok", "Whether the last mapping reload was accepted (1) or refused (0).")
	mappingLastLoadDesc   = desc("ehrbridge_mapping_last_success_timestamp_seconds", "When the running mapping set was loaded.")
	recordsDesc           = desc("ehrbridge_records", "Records in the checkpoint log, by state: done were applied, skipped were stored and acknowledged but no mapping accepts them.", "state")
	backlogDesc           = desc("ehrbridge_backlog", "Records waiting in the lanes to reach the CRM (received, in progress, retrying).")
	commitDurationDesc    = desc("ehrbridge_checkpoint_commit_duration_seconds", "Group commits of the checkpoint log (write and fsync), which every acknowledgment waits for.")
	commitAppendsDesc     = desc("ehrbridge_checkpoint_committed_appends_total", "Appends the group commits carried, retransmits included; divided by the commit count, the mean batch.")
	commitFailuresDesc    = desc("ehrbridge_checkpoint_commit_failures_total", "Group commits that failed (disk full, I/O error): their senders got AE.")
	messagesDesc          = desc("ehrbridge_messages_total", "HL7 messages received, by outcome.", "outcome")
	fhirPollsDesc         = desc("ehrbridge_fhir_polls_total", "Polls of a FHIR source, by result.", "source", "result")
	fhirResourcesDesc     = desc("ehrbridge_fhir_resources_total", "FHIR resource versions read, by outcome: stored new, recognised as already stored, or deletes stored.", "source", "outcome")
	fhirNotificationsDesc = desc("ehrbridge_fhir_notifications_total", "Subscription notifications, by answer: stored (2xx), refused (4xx), failed (5xx, sent again by the server).", "source", "result")
	fhirLastPollOKDesc    = desc("ehrbridge_fhir_last_poll_success_timestamp_seconds", "When a poll of the source last read everything it was due to (0: never).", "source")
	pipelineRecordsDesc   = desc("ehrbridge_pipeline_records_total", "Records the pipeline settled, by outcome: done (echoes included), retrying, dead, skipped (no mapping accepts them), echo.", "outcome")
	pipelineWarnedDesc    = desc("ehrbridge_pipeline_records_with_warnings_total", "Records done with warnings: applied, some fields left out by their mapping (a malformed optional timestamp, say).")
	breakerStateDesc      = desc("ehrbridge_crm_breaker_state", "The CRM breaker's state: closed (batches are sent), open (the CRM failed transiently; no batch is sent until a probe is answered), probing (a probe is in flight).", "state")
	breakerSinceDesc      = desc("ehrbridge_crm_breaker_state_since_timestamp_seconds", "When the CRM breaker entered its state (0: closed since start).")
	breakerOpenedDesc     = desc("ehrbridge_crm_breaker_opened_total", "Times the CRM breaker opened (a batch failed transiently as a whole).")
	breakerProbesDesc     = desc("ehrbridge_crm_breaker_probes_total", "Probe requests sent to the CRM while the breaker was open.")
	pausedDesc            = desc("ehrbridge_pipeline_paused", "Whether sending is paused for the CRM's API allocation.")
	crmRequestsDesc       = desc("ehrbridge_crm_requests_total", "CRM API requests sent, retries included (token requests not).")
	apiUsedDesc           = desc("ehrbridge_crm_api_requests_used", "Daily API requests used in the CRM org, as it last reported.")
	apiLimitDesc          = desc("ehrbridge_crm_api_requests_limit", "The CRM org's daily API allocation.")
	apiRemainingDesc      = desc("ehrbridge_crm_api_requests_remaining", "Daily API requests left in the CRM org.")
)

var daemonDescs = []*prometheus.Desc{
	storageWritableDesc, mappingsLoadedDesc, mappingReloadsDesc, mappingLastOKDesc, mappingLastLoadDesc,
	recordsDesc, backlogDesc, commitDurationDesc, commitAppendsDesc, commitFailuresDesc, messagesDesc,
	fhirPollsDesc, fhirResourcesDesc, fhirNotificationsDesc, fhirLastPollOKDesc,
	pipelineRecordsDesc, pipelineWarnedDesc, breakerStateDesc, breakerSinceDesc, breakerOpenedDesc, breakerProbesDesc,
	pausedDesc, crmRequestsDesc, apiUsedDesc, apiLimitDesc, apiRemainingDesc,
}

// daemonCollector reads the daemon's counters when scraped: the checkpoint
// log's states and commits, and, through Status, the sources', the
// pipeline's and the CRM client's. It keeps no counts of its own. Families of a part that is not
// configured (FHIR sources, the CRM, its breaker, an org that reported no
// API usage yet) are left out, as before.
type daemonCollector struct{ a *Server }

// Describe sends every family the daemon may report; Collect leaves out
// those of parts not configured.
func (c daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range daemonDescs {
		ch <- d
	}
}

// Collect reads the counters as they are at the scrape.
func (c daemonCollector) Collect(ch chan<- prometheus.Metric) {
	st, cp := c.a.st, c.a.cp
	ch <- gauge(storageWritableDesc, boolValue(st.StorageProblem() == ""))
	ms := st.Mappings()
	ch <- gauge(mappingsLoadedDesc, float64(len(ms.Names)))
	ch <- counter(mappingReloadsDesc, float64(ms.Loaded), "ok")
	ch <- counter(mappingReloadsDesc, float64(ms.Refused), "refused")
	ch <- gauge(mappingLastOKDesc, boolValue(ms.LastOK))
	ch <- gauge(mappingLastLoadDesc, float64(ms.LastReload))
	if s, err := cp.Stats(); err == nil {
		recordMetrics(ch, s)
	}
	commitMetrics(ch, cp.CommitStats())
	var accepted, duplicates, rejected int64
	for _, s := range st.MLLPSources() {
		accepted += s.Accepted
		duplicates += s.Duplicates
		rejected += s.Rejected + s.Conflicts + s.Errored
	}
	ch <- counter(messagesDesc, float64(accepted), "acknowledged")
	ch <- counter(messagesDesc, float64(duplicates), "retransmit")
	ch <- counter(messagesDesc, float64(rejected), "refused")
	fhirMetrics(ch, st.FHIRSources())
	if cr := st.CRM(); cr != nil {
		pipelineMetrics(ch, cr)
		breakerMetrics(ch, cr.Breaker)
		ch <- gauge(pausedDesc, boolValue(!cr.PausedUntil.IsZero()))
		ch <- counter(crmRequestsDesc, float64(cr.Requests))
		if used, limit := cr.APIUsed, cr.APILimit; limit > 0 {
			ch <- gauge(apiUsedDesc, float64(used))
			ch <- gauge(apiLimitDesc, float64(limit))
			ch <- gauge(apiRemainingDesc, float64(max(0, limit-used)))
		}
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// recordMetrics reports the checkpoint log's records by state (done, the
// synced, apart from skipped, the ignored) and the backlog.
func recordMetrics(ch chan<- prometheus.Metric, st checkpoint.Stats) {
	for _, s := range checkpoint.States {
		ch <- gauge(recordsDesc, float64(st.States[s]), s.String())
	}
	backlog := st.States[checkpoint.Received] + st.States[checkpoint.InProgress] + st.States[checkpoint.Retrying]
	ch <- gauge(backlogDesc, float64(backlog))
}

// commitMetrics reports the checkpoint log's group commits: the fsynced
// transactions every acknowledgment waits for. The log keeps the
// histogram (cumulative buckets at CommitBounds); this only reads it.
func commitMetrics(ch chan<- prometheus.Metric, s checkpoint.CommitStats) {
	buckets := make(map[float64]uint64, len(checkpoint.CommitBounds))
	for i, b := range checkpoint.CommitBounds {
		buckets[b.Seconds()] = s.Buckets[i]
	}
	ch <- prometheus.MustNewConstHistogram(commitDurationDesc, s.Commits, s.Total.Seconds(), buckets)
	ch <- counter(commitAppendsDesc, float64(s.Appends))
	ch <- counter(commitFailuresDesc, float64(s.Failures))
}

// pipelineMetrics reports what the pipeline settled since start.
func pipelineMetrics(ch chan<- prometheus.Metric, p *CRM) {
	for _, o := range []struct {
		name string
		n    int64
	}{{"done", p.Done}, {"retrying", p.Retried}, {"dead", p.Dead}, {"skipped", p.Skipped}, {"echo", p.Echoes}} {
		ch <- counter(pipelineRecordsDesc, float64(o.n), o.name)
	}
	ch <- counter(pipelineWarnedDesc, float64(p.Warned))
}

// breakerMetrics reports the CRM breaker: its state as one gauge per state
// (1 for the current one), since when, how often it opened and the probes
// sent. Nothing when the breaker is off.
func breakerMetrics(ch chan<- prometheus.Metric, b pipeline.BreakerStatus) {
	if !b.Enabled {
		return
	}
	for _, s := range []pipeline.BreakerState{pipeline.BreakerClosed, pipeline.BreakerOpen, pipeline.BreakerProbing} {
		ch <- gauge(breakerStateDesc, boolValue(b.State == s), s.String())
	}
	var since int64
	if !b.Since.IsZero() {
		since = b.Since.Unix()
	}
	ch <- gauge(breakerSinceDesc, float64(since))
	ch <- counter(breakerOpenedDesc, float64(b.Opened))
	ch <- counter(breakerProbesDesc, float64(b.Probes))
}

// fhirMetrics reports the FHIR sources' counters; the source label is the
// configured name.
func fhirMetrics(ch chan<- prometheus.Metric, sources []FHIRSource) {
	for _, c := range sources {
		name := c.Name
		ch <- counter(fhirPollsDesc, float64(c.Polls-c.PollsFailed), name, "ok")
		ch <- counter(fhirPollsDesc, float64(c.PollsFailed), name, "failed")
		ch <- counter(fhirResourcesDesc, float64(c.Stored), name, "stored")
		ch <- counter(fhirResourcesDesc, float64(c.Repeats), name, "repeat")
		ch <- counter(fhirResourcesDesc, float64(c.DeletesStored), name, "delete")
		ch <- counter(fhirNotificationsDesc, float64(c.Notifications), name, "stored")
		ch <- counter(fhirNotificationsDesc, float64(c.NotificationsRefused), name, "refused")
		ch <- counter(fhirNotificationsDesc, float64(c.NotificationsFailed), name, "failed")
		var ts int64
		if c.LastPollOK != nil {
			ts = c.LastPollOK.Unix()
		}
		ch <- gauge(fhirLastPollOKDesc, float64(ts), name)
	}
}
