package daemon

import (
	"encoding/csv"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/robfig/cron/v3"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/writeback"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// crm is the CRM side: the connector (Salesforce or Dataverse), the
// embedded sandbox when configured, and the pipeline that feeds them from
// the checkpoint log.
type crm struct {
	kind     string             // "Salesforce" or "Dataverse", for logs and the admin page
	client   *salesforce.Client // the Salesforce client, nil for Dataverse
	dv       *dynamics.Client
	sink     connectors.Sink
	sandbox  *sandbox.Server
	sbAddr   string
	pipe     *pipeline.Pipeline
	cron     *cron.Cron
	cancel   context.CancelFunc
	stopped  chan struct{}
	failed   atomic.Bool // the pipeline panicked: nothing is sent on stop
	requests func() int64
}

// usage is the CRM's daily API usage as it last reported (Salesforce).
func (c *crm) usage() (used, limit int) {
	if c.client == nil {
		return 0, 0
	}
	return c.client.Usage()
}

// startCRM builds the connector (and sandbox) and starts the pipeline;
// nil config gives nil.
// A panic in the pipeline or a write-back poll is reported on errc.
func startCRM(cfg *config.Config, cp *checkpoint.Log, maps func() *mappings.Set, patients func(string) mappings.PatientResolver, errc chan<- error, log *slog.Logger) (*crm, error) {
	cc := cfg.CRM
	if cc == nil {
		return nil, nil
	}
	c := &crm{stopped: make(chan struct{})}
	crmLog := log.With("component", "crm")
	var err error
	switch {
	case cc.Dynamics != nil || cc.Sandbox != nil && cc.Sandbox.Flavor == "dataverse":
		err = c.startDataverse(cc, crmLog)
	default:
		err = c.startSalesforce(cc, crmLog)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	var notes pipeline.NoteHandler
	var source *writeback.Source
	echo := ""
	if wb := cfg.Writeback; wb != nil {
		var notesCRM connectors.NoteReader = &salesforce.NoteReader{Client: c.client}
		if c.dv != nil {
			notesCRM = &dynamics.NoteReader{Client: c.dv}
		}
		h, src, err := newWriteback(wb, cfg.DataDir, notesCRM, cp, log)
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
	c.pipe = pipeline.New(pipeline.Options{Log: cp, Mappings: maps, Sink: c.sink,
		BatchSize: cc.Pipeline.BatchSize, Linger: cc.Pipeline.Linger.Std(), Logger: log, Notes: notes, EchoPrefix: echo,
		Applied: applied, Patients: patients, ProbeMax: cc.Pipeline.ProbeMax.Std()})
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
		c.cron.Schedule(sched, cron.FuncJob(func() {
			guard(wbLog, errc, "write-back poll", func() {
				if cp.StorageProblem() != nil {
					// What the poll found could not be stored: no
					// CRM request is spent on it. storageLoop
					// reports the problem; the first poll after it
					// ends catches up.
					return
				}
				if n, err := source.Poll(ctx); err != nil && ctx.Err() == nil {
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
	return writeback.Config{Object: wb.Object, FlagField: wb.FlagField, DocPrefix: wb.DocPrefix,
		SendingApp: wb.SendingApplication, SendingFacility: wb.SendingFacility,
		ReceivingApp: wb.ReceivingApplication, ReceivingFacility: wb.ReceivingFacility,
		AuthorField: wb.AuthorField, AuthorRequired: wb.AuthorRequired,
		EncounterRule: wb.EncounterRule, EncounterLinkField: wb.EncounterLinkField, EncounterRequired: wb.EncounterRequired,
		ReplaceTrigger: wb.ReplaceTrigger, AEMaxAttempts: wb.Target.AEMaxAttempts}
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
		ft := &ehr.FHIRTarget{Base: f.BaseURL, DocSystem: f.DocSystem, TypeCode: f.TypeCode}
		switch {
		case f.SMARTKeyFile != "":
			pemBytes, err := os.ReadFile(f.SMARTKeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir.smart_key_file: %w", err)
			}
			k, err := fhirhttp.ParseRSAKey(pemBytes)
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir.smart_key_file: %w", err)
			}
			ft.Auth = &fhirhttp.BackendServices{TokenURL: f.SMARTTokenURL, ClientID: f.SMARTClientID, Key: k}
		case f.Token.IsSet():
			tok, err := f.Token.Resolve()
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir token: %w", err)
			}
			ft.Auth = fhirhttp.StaticToken(tok)
		}
		target = ft
	} else if wb.Target.MLLP != "" {
		mt, err := newMLLPTarget(wb.Target, log.With("component", "writeback"))
		if err != nil {
			return nil, nil, err
		}
		target = mt
	} else {
		target = &ehr.FileDrop{Dir: wb.Target.Dir, Retention: wb.Target.Retention.Std(), Logger: log.With("component", "writeback")}
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

func (c *crm) close() {
	if c.sandbox != nil {
		_ = c.sandbox.Close()
	}
}

// startSalesforce connects to Salesforce, or to the sandbox's Salesforce
// side.
func (c *crm) startSalesforce(cc *config.CRMConfig, log *slog.Logger) error {
	c.kind = "Salesforce"
	var scfg salesforce.Config
	if sb := cc.Sandbox; sb != nil && sb.Embed {
		// The daemon connects to its own sandbox with a secret made for
		// this run: nothing to configure, nothing to leak.
		secret := randomSecret()
		if _, err := c.embedSandbox(sandbox.Options{ClientSecret: secret, DataFile: sb.DataFile, Logger: log}, sb.Listen); err != nil {
			return err
		}
		scfg = salesforce.Config{LoginURL: "http://" + c.sbAddr, ClientID: "sandbox-client", ClientSecret: secret, Auth: salesforce.Auth{ClientCredentials: true}}
	} else if sb := cc.Sandbox; sb != nil {
		// A sandbox running apart, with its default test credentials
		// (they guard no real data).
		scfg = salesforce.Config{LoginURL: "http://" + sb.Listen, ClientID: "sandbox-client", ClientSecret: "sandbox-secret", Auth: salesforce.Auth{ClientCredentials: true}}
	} else {
		var err error
		if scfg, err = SalesforceClientConfig(cc.Salesforce); err != nil {
			return err
		}
	}
	scfg.Logger = log
	client, err := salesforce.New(scfg)
	if err != nil {
		return err
	}
	c.client, c.sink, c.requests = client, &salesforce.Sink{Client: client}, client.Requests.Load
	return nil
}

// startDataverse connects to Dataverse, or to the sandbox's Dataverse
// side (over TLS, trusting the sandbox's own certificate).
func (c *crm) startDataverse(cc *config.CRMConfig, log *slog.Logger) error {
	c.kind = "Dataverse"
	var dcfg dynamics.Config
	var auth dynamics.Auth
	if sb := cc.Sandbox; sb != nil {
		keyFile := strings.TrimSuffix(sb.TLSCert, ".pem") + "-key.pem"
		secret := "sandbox-secret"
		var certPEM []byte
		if sb.Embed {
			cert, pemBytes, err := sandbox.LoadOrCreateCert(sb.TLSCert, keyFile)
			if err != nil {
				return err
			}
			secret = randomSecret()
			s, err := c.embedSandbox(sandbox.Options{DataverseSecret: secret, DataFile: sb.DataFile, Logger: log}, sb.Listen)
			if err != nil {
				return err
			}
			taddr, err := s.ListenTLS(sb.TLSListen, cert)
			if err != nil {
				return err
			}
			sb.TLSListen, certPEM = taddr.String(), pemBytes
		} else {
			pemBytes, err := os.ReadFile(sb.TLSCert)
			if err != nil {
				return fmt.Errorf("crm.sandbox.tls_cert (the running sandbox's certificate; see its --tls-cert): %w", err)
			}
			certPEM = pemBytes
		}
		hc, err := httpClientTrusting(certPEM, false)
		if err != nil {
			return err
		}
		base := "https://" + sb.TLSListen
		auth = dynamics.Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: secret, AuthorityHost: base, HTTPClient: hc}
		dcfg = dynamics.Config{URL: base, HTTPClient: hc}
	} else {
		var err error
		if dcfg, auth, err = DataverseClientConfig(cc.Dynamics); err != nil {
			return err
		}
	}
	cred, err := dynamics.NewCredential(auth)
	if err != nil {
		return err
	}
	dcfg.Credential, dcfg.Logger = cred, log
	client, err := dynamics.New(dcfg)
	if err != nil {
		return err
	}
	c.dv, c.sink, c.requests = client, &dynamics.Sink{Client: client}, client.Requests.Load
	return nil
}

// embedSandbox starts the embedded sandbox on listen (plain HTTP: the
// test endpoints, and the Salesforce side).
func (c *crm) embedSandbox(opts sandbox.Options, listen string) (*sandbox.Server, error) {
	s, err := sandbox.New(opts)
	if err != nil {
		return nil, err
	}
	c.sandbox = s
	addr, err := s.Listen(listen)
	if err != nil {
		return nil, err
	}
	c.sbAddr = addr.String()
	return s, nil
}

// httpClientTrusting is an HTTP client that trusts the CAs in pemBytes,
// besides the system's when withSystem is set.
func httpClientTrusting(pemBytes []byte, withSystem bool) (*http.Client, error) {
	pool := x509.NewCertPool()
	if withSystem {
		if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		}
	}
	if len(pemBytes) > 0 && !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no PEM certificate to trust")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, nil
}

func randomSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
