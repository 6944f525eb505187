package daemon

import (
	"time"

	"github.com/ehrbridge/ehrbridge/internal/admin"
	"github.com/ehrbridge/ehrbridge/internal/config"
)

// statusView is the admin endpoint's view of the daemon (admin.Status):
// it asks each part for its status. The admin endpoint serves only once
// every part has started, so the parts it reads are set.
type statusView struct{ d *Daemon }

var _ admin.Status = statusView{}

func (v statusView) Ready() bool {
	select {
	case <-v.d.ready:
		return true
	default:
		return false
	}
}

func (v statusView) StorageProblem() string { return v.d.storageProblem() }

func (v statusView) Mappings() admin.Mappings { return v.d.maps.status() }

func (v statusView) MLLPSources() []admin.MLLPSource {
	var out []admin.MLLPSource
	for _, s := range v.d.sources {
		out = append(out, s.status())
	}
	return out
}

func (v statusView) FHIRSources() []admin.FHIRSource { return v.d.fhir.status() }

func (v statusView) CRM() *admin.CRM { return v.d.crm.status() }

func (v statusView) Insecure() []config.InsecureSetting { return v.d.insecure }

func (v statusView) Writeback() *admin.Writeback {
	if v.d.crm == nil {
		return nil
	}
	return v.d.crm.wb.status()
}

// status is the mapping set's: its mappings and reloads.
func (ms *mappingSet) status() admin.Mappings {
	out := admin.Mappings{Loaded: ms.loaded.Load(), Refused: ms.refused.Load(), LastOK: ms.lastOK.Load(),
		LastReload: ms.lastReload.Load()}
	for _, m := range ms.Current().Mappings {
		out.Names = append(out.Names, m.Name)
	}
	if p := ms.lastProblem.Load(); p != nil {
		out.LastProblem = *p
	}
	return out
}

// status is an MLLP source's counters: its server's and its handler's.
func (s *source) status() admin.MLLPSource {
	st := s.server.Stats()
	return admin.MLLPSource{
		Name: s.cfg.Name, Listen: s.listener.Addr().String(),
		ConnectionsOpen: st.ConnectionsOpen.Load(), ConnectionsTotal: st.ConnectionsTotal.Load(),
		Frames: st.Frames.Load(), FramesTooLarge: st.FramesTooLarge.Load(), JunkBytes: st.JunkBytes.Load(),
		Accepted: s.handler.Accepted.Load(), Duplicates: s.handler.Duplicates.Load(), Conflicts: s.handler.Conflicts.Load(),
		Rejected: s.handler.Rejected.Load(), Errored: s.handler.Errored.Load(),
	}
}

// status is each FHIR source's counters, times and watermarks, in
// configuration order (URLs as configured: the admin endpoint redacts
// them); nil without FHIR sources.
func (f *fhirSources) status() []admin.FHIRSource {
	if f == nil {
		return nil
	}
	addrs := map[string]string{}
	for _, ep := range f.endpoints {
		addrs[ep.source] = ep.listener.Addr().String()
	}
	var out []admin.FHIRSource
	for _, e := range f.sources {
		c := &e.src.Counters
		st := admin.FHIRSource{Name: e.cfg.Name, BaseURL: e.cfg.BaseURL, Schedule: e.cfg.Schedule, Deletes: e.cfg.Deletes,
			LastError: c.LastError(), Polls: c.Polls.Load(), PollsFailed: c.PollsFailed.Load(), Stored: c.Stored.Load(),
			Repeats: c.Repeats.Load(), DeletesStored: c.Deletes.Load(), Notifications: c.Notifications.Load(),
			NotificationsRefused: c.Refused.Load(), NotificationsFailed: c.NotificationsFailed.Load(),
			Watermarks: map[string]time.Time{}, Subscription: addrs[e.cfg.Name]}
		if st.Deletes == "" {
			st.Deletes = "ignore"
		}
		if t := c.LastPoll(); !t.IsZero() {
			st.LastPoll = &t
		}
		if t := c.LastPollOK(); !t.IsZero() {
			st.LastPollOK = &t
		}
		for _, typ := range e.cfg.Types {
			if wm, err := e.src.Watermark(typ); err == nil && !wm.IsZero() {
				st.Watermarks[typ] = wm
			}
		}
		st.BulkExportPending, _ = e.src.BulkPending()
		out = append(out, st)
	}
	return out
}

// status is the CRM side's: the connector's kind and counters and the
// pipeline's; nil without a CRM.
func (c *crm) status() *admin.CRM {
	if c == nil {
		return nil
	}
	p := c.pipe
	out := &admin.CRM{Kind: c.conn.Kind, SandboxAddr: c.conn.SandboxAddr, Breaker: p.Breaker(), PausedUntil: p.PausedUntil(),
		Requests: c.conn.Requests(), Done: p.Done.Load(), Retried: p.Retried.Load(), Dead: p.Dead.Load(),
		Skipped: p.Skipped.Load(), Echoes: p.Echoes.Load(), Warned: p.Warned.Load(), BySource: p.BySource()}
	out.APIUsed, out.APILimit = c.conn.Usage()
	return out
}
