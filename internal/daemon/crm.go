package daemon

import (
	"encoding/csv"
	"io"
	"path/filepath"
	"strings"
	"time"

	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"

	"github.com/robfig/cron/v3"

	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/writeback"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/connectors/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// crm is the CRM side: the Salesforce client, the embedded sandbox when
// configured, and the pipeline that feeds them from the checkpoint log.
type crm struct {
	client  *salesforce.Client
	sandbox *sandbox.Server
	sbAddr  string
	pipe    *pipeline.Pipeline
	cron    *cron.Cron
	cancel  context.CancelFunc
	stopped chan struct{}
}

// startCRM builds the client (and sandbox) and starts the pipeline; nil
// config gives nil.
func startCRM(cfg *config.Config, cp *checkpoint.Log, maps func() *mappings.Set, log *slog.Logger) (*crm, error) {
	cc := cfg.CRM
	if cc == nil {
		return nil, nil
	}
	c := &crm{stopped: make(chan struct{})}
	sfLog := log.With("component", "crm")
	var scfg salesforce.Config
	if sb := cc.Sandbox; sb != nil && sb.Embed {
		// The daemon connects to its own sandbox with a secret made for
		// this run: nothing to configure, nothing to leak.
		var b [16]byte
		_, _ = rand.Read(b[:])
		secret := hex.EncodeToString(b[:])
		s, err := sandbox.New(sandbox.Options{ClientSecret: secret, DataFile: sb.DataFile, Logger: sfLog})
		if err != nil {
			return nil, err
		}
		addr, err := s.Listen(sb.Listen)
		if err != nil {
			s.Close()
			return nil, err
		}
		c.sandbox, c.sbAddr = s, addr.String()
		scfg = salesforce.Config{LoginURL: "http://" + c.sbAddr, ClientID: "sandbox-client", ClientSecret: secret, Auth: salesforce.Auth{ClientCredentials: true}}
	} else if sb := cc.Sandbox; sb != nil {
		// A sandbox running apart, with its default test credentials
		// (they guard no real data).
		scfg = salesforce.Config{LoginURL: "http://" + sb.Listen, ClientID: "sandbox-client", ClientSecret: "sandbox-secret", Auth: salesforce.Auth{ClientCredentials: true}}
	} else {
		sf := cc.Salesforce
		scfg = salesforce.Config{LoginURL: sf.LoginURL, APIVersion: sf.APIVersion, ClientID: sf.ClientID,
			MaxConcurrent: sf.MaxConcurrent, BudgetReserve: sf.BudgetReserve}
		if sf.ClientSecret.IsSet() {
			secret, err := sf.ClientSecret.Resolve()
			if err != nil {
				return nil, fmt.Errorf("crm.salesforce client secret: %w", err)
			}
			scfg.ClientSecret = secret
		}
		switch {
		case sf.JWTUsername != "":
			key, err := os.ReadFile(sf.JWTKeyFile)
			if err != nil {
				return nil, fmt.Errorf("crm.salesforce.jwt_key_file: %w", err)
			}
			scfg.Auth = salesforce.Auth{JWTUsername: sf.JWTUsername, JWTPrivateKey: key}
		case sf.RefreshToken.IsSet():
			rt, err := sf.RefreshToken.Resolve()
			if err != nil {
				return nil, fmt.Errorf("crm.salesforce refresh token: %w", err)
			}
			scfg.Auth = salesforce.Auth{RefreshToken: rt}
		default:
			scfg.Auth = salesforce.Auth{ClientCredentials: true}
		}
	}
	scfg.Logger = sfLog
	client, err := salesforce.New(scfg)
	if err != nil {
		c.close()
		return nil, err
	}
	c.client = client
	var notes pipeline.NoteHandler
	var source *writeback.Source
	echo := ""
	if wb := cfg.Writeback; wb != nil {
		h, src, err := newWriteback(wb, cfg.DataDir, client, cp, log)
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
	c.pipe = pipeline.New(pipeline.Options{Log: cp, Mappings: maps, Sink: &salesforce.Sink{Client: client},
		BatchSize: cc.Pipeline.BatchSize, Linger: cc.Pipeline.Linger.Std(), Logger: log, Notes: notes, EchoPrefix: echo,
		Applied: applied})
	if waker != nil {
		waker.Notify = c.pipe.Notify
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if source != nil {
		source.Appended = c.pipe.Notify
		c.cron = cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
		wbLog := log.With("component", "writeback")
		if _, err := c.cron.AddFunc(cfg.Writeback.Schedule, func() {
			if n, err := source.Poll(ctx); err != nil && ctx.Err() == nil {
				wbLog.Warn("polling the CRM for notes failed; will try again", "err", err)
			} else if n > 0 {
				wbLog.Info("notes to file in the EHR", "versions", n)
			}
		}); err != nil {
			cancel()
			c.close()
			return nil, fmt.Errorf("writeback.schedule: %w", err)
		}
		c.cron.Start()
	}
	go func() {
		defer close(c.stopped)
		_ = c.pipe.Run(ctx)
	}()
	return c, nil
}

// newWriteback builds the note handler and poller.
func newWriteback(wb *config.WritebackConfig, dataDir string, client *salesforce.Client, cp *checkpoint.Log, log *slog.Logger) (*writeback.Handler, *writeback.Source, error) {
	wcfg := writeback.Config{Object: wb.Object, FlagField: wb.FlagField, DocPrefix: wb.DocPrefix,
		SendingApp: wb.SendingApplication, SendingFacility: wb.SendingFacility,
		ReceivingApp: wb.ReceivingApplication, ReceivingFacility: wb.ReceivingFacility,
		AuthorField: wb.AuthorField, AuthorRequired: wb.AuthorRequired,
		EncounterRule: wb.EncounterRule, EncounterLinkField: wb.EncounterLinkField, EncounterRequired: wb.EncounterRequired,
		ReplaceTrigger: wb.ReplaceTrigger}
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
	var target writeback.Target
	if f := wb.Target.FHIR; f != nil {
		ft := &writeback.FHIR{Base: f.BaseURL, DocSystem: f.DocSystem, TypeCode: f.TypeCode}
		switch {
		case f.SMARTKeyFile != "":
			pemBytes, err := os.ReadFile(f.SMARTKeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir.smart_key_file: %w", err)
			}
			k, err := writeback.ParseRSAKey(pemBytes)
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir.smart_key_file: %w", err)
			}
			ft.Auth = &writeback.BackendServices{TokenURL: f.SMARTTokenURL, ClientID: f.SMARTClientID, Key: k}
		case f.Token.IsSet():
			tok, err := f.Token.Resolve()
			if err != nil {
				return nil, nil, fmt.Errorf("writeback.target.fhir token: %w", err)
			}
			ft.Auth = writeback.StaticToken(tok)
		}
		target = ft
	} else if wb.Target.MLLP != "" {
		target = &writeback.MLLP{Client: &mllp.Client{Addr: wb.Target.MLLP, Logger: log.With("component", "writeback")}}
	} else {
		target = &writeback.FileDrop{Dir: wb.Target.Dir}
	}
	h := &writeback.Handler{Cfg: wcfg, Client: client, Target: target, Logger: log.With("component", "writeback")}
	src := &writeback.Source{Cfg: wcfg, Client: client, Log: cp, WatermarkFile: filepath.Join(dataDir, "writeback.watermark"), Logger: log}
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
