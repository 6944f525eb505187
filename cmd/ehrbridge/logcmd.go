package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

const logUsage = `usage: ehrbridge log COMMAND (--config F | --data-dir D) [flags]

commands:
  stats [--json]                               counts per state, oldest pending, conflicts, file size
  list --state S [--json] [--limit N] [--after ID]
                                               S: received, in_progress, done, retrying, dead, skipped,
                                               warned (done with warnings), held, conflict, all
  show ID [--conflict] [--reveal] [--json]     one record's metadata; --reveal adds the payload (audited)
  find [--mrn AUTHORITY|MRN] [--state S[,S]] [--type T] [--source NAME] [--control-id C]
       [--from TIME] [--to TIME] [--limit N] [--before ID] [--json]
                                               records by patient (matched through the log's keyed
                                               hashes), state, message type (ADT^A01, or ADT for all
                                               ADT events), source, MSH-10, arrival (RFC 3339); newest
                                               first, a page at a time (--before: the id it names)
  trace ID [--json]                            one record's metadata, ACK, every attempt and admin
                                               action, next retry, and its patient's records in
                                               lane order with what holds the lane
  retry ID [ID...] | --all-dead | --all-skipped [--type T]
                                               put dead or skipped records back in their lane
                                               (skipped: after adding a mapping for them; T: VXU^V04)
  close ID --reason TEXT                       end a dead record that will not be retried: it becomes
                                               skipped, "closed by" you; TEXT is kept sealed (audited)
  resolve CONFLICT-ID --keep | --accept        keep the stored message, or accept the conflicting one
                                               in its place (the record is requeued in its lane)
  release ID                                   retry a held note (a retrying record) now
  backup FILE                                  a consistent copy of the log, also while the daemon runs
  compact                                      rewrite the file to reclaim space (daemon stopped)
  reseal                                       seal every payload with the active key, then compact
                                               (after enabling encryption or rotating the key; daemon stopped)
  check                                        verify the file and the log's invariants (daemon stopped)

With the daemon stopped the log file is opened directly; while it runs,
stats, list, show, find, trace, retry, close, resolve and release are
answered by the daemon's admin endpoint. Every find, trace and action is
written to the audit log with who made it.`

func cmdLog(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, logUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("log "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, logUsage) }
	cfgFile := fs.String("config", "", "config file (gives the data directory, admin endpoint and key)")
	dataDir := fs.String("data-dir", "", "data directory, when no config file is at hand")
	asJSON := fs.Bool("json", false, "print JSON")
	state := fs.String("state", "", "state to list")
	limit := fs.Int("limit", 100, "how many records to list")
	after := fs.Uint64("after", 0, "list records after this id")
	reveal := fs.Bool("reveal", false, "show the payload (written to the audit log)")
	conflict := fs.Bool("conflict", false, "ID names a conflict entry")
	allDead := fs.Bool("all-dead", false, "retry every dead record")
	allSkipped := fs.Bool("all-skipped", false, "retry every skipped record (of --type)")
	typ := fs.String("type", "", "find: message type (ADT^A01, or ADT); with --all-skipped: only records of this message type (VXU^V04) or FHIR resource type")
	mrn := fs.String("mrn", "", "find: the patient, as AUTHORITY|MRN")
	source := fs.String("source", "", "find: the source's name")
	controlID := fs.String("control-id", "", "find: the HL7 control id (MSH-10), or SENDER-APP|SENDER-FACILITY|MSH-10")
	from := fs.String("from", "", "find: received at or after this time (RFC 3339)")
	to := fs.String("to", "", "find: received before this time (RFC 3339)")
	before := fs.Uint64("before", 0, "find: records with smaller ids (the next page)")
	reason := fs.String("reason", "", "close: why the record is closed (kept sealed, shown only by show --reveal)")
	keep := fs.Bool("keep", false, "resolve: keep the stored message")
	accept := fs.Bool("accept", false, "resolve: accept the conflicting message in its place")
	// Flags may come before or after the positional ID.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	t, err := resolveLogTarget(*cfgFile, *dataDir)
	if err != nil && os.Getenv(adminURLEnv) != "" && *cfgFile == "" && *dataDir == "" {
		switch sub {
		case "stats", "list", "show", "retry", "backup", "find", "trace", "close", "resolve", "release":
			// A remote tool: the daemon is asked at EHRBRIDGE_ADMIN_URL.
			t, err = &logTarget{}, nil
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge log %s: %v\n", sub, err)
		return exitUsage
	}
	switch sub {
	case "backup":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: ehrbridge log backup FILE (--config F | --data-dir D)")
			return exitUsage
		}
		return logBackup(t, pos[0], stdout, stderr)
	case "compact":
		return logCompact(t, stdout, stderr)
	case "reseal":
		return logReseal(t, stdout, stderr)
	case "check":
		return logCheck(t, stdout, stderr)
	case "stats", "list", "show", "retry", "find", "trace", "close", "resolve", "release":
	default:
		fmt.Fprintf(stderr, "ehrbridge log: unknown command %q\n\n%s\n", sub, logUsage)
		return exitUsage
	}
	write := sub == "retry" || sub == "close" || sub == "resolve" || sub == "release"
	svc, closeFn, err := t.service(write)
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge log %s: %v\n", sub, err)
		return exitFailure
	}
	defer closeFn()
	me := logadmin.LocalCaller() // a daemon asked names its caller itself
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ehrbridge log %s: %v\n", sub, err)
		if errors.Is(err, logadmin.ErrUnauthorized) {
			fmt.Fprintf(stderr, "over TCP, name an admin account: %s and %s (admin.accounts)\n", adminAccountEnv, adminTokenEnv)
		}
		return exitFailure
	}
	switch sub {
	case "stats":
		st, err := svc.Stats()
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printJSON(stdout, st)
		}
		printStats(stdout, st, t.path)
	case "list":
		if *state == "" {
			fmt.Fprintln(stderr, "ehrbridge log list: --state is required")
			return exitUsage
		}
		recs, confs, err := svc.List(*state, *after, *limit)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			if *state == "conflict" {
				return printJSON(stdout, nonNil(confs))
			}
			return printJSON(stdout, nonNil(recs))
		}
		printList(stdout, recs, confs)
	case "show":
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		if *conflict {
			c, err := svc.ShowConflict(id, *reveal)
			if err != nil {
				return fail(err)
			}
			if *asJSON {
				return printJSON(stdout, c)
			}
			printConflict(stdout, c)
			return exitOK
		}
		r, err := svc.Show(id, *reveal)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printJSON(stdout, r)
		}
		printRecord(stdout, r, *reveal)
	case "retry":
		if *allDead && *allSkipped {
			fmt.Fprintln(stderr, "ehrbridge log retry: give --all-dead or --all-skipped, not both")
			return exitUsage
		}
		if *typ != "" && !*allSkipped {
			fmt.Fprintln(stderr, "ehrbridge log retry: --type goes with --all-skipped")
			return exitUsage
		}
		if *allSkipped {
			n, gone, err := svc.RetrySkipped(*typ)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "requeued %d skipped record(s)\n", n)
			if gone > 0 {
				fmt.Fprintf(stdout, "%d skipped record(s) left as they are: retention dropped their payloads (payload_retention)\n", gone)
			}
			return exitOK
		}
		if *allDead {
			n, err := svc.RetryAllDead()
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "requeued %d dead record(s)\n", n)
			return exitOK
		}
		if len(pos) > 1 {
			ids, ok := recordIDs(sub, pos, stderr)
			if !ok {
				return exitUsage
			}
			v, err := svc.RetryIDs(me, ids)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "requeued %d of %d record(s)%s; the others are not dead or skipped (log trace ID)\n",
				len(v.Requeued), len(ids), idList(v.Requeued))
			return exitOK
		}
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		if err := svc.Retry(id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "requeued record %d\n", id)
	case "find":
		q := logadmin.FindRequest{Type: *typ, Source: *source, ControlID: *controlID, Before: *before, Limit: *limit}
		if *mrn != "" {
			if q.Authority, q.MRN, err = logadmin.ParsePatient(*mrn); err != nil {
				fmt.Fprintf(stderr, "ehrbridge log find: --mrn: %v\n", err)
				return exitUsage
			}
		}
		if *state != "" {
			q.States = strings.Split(*state, ",")
		}
		for _, tm := range []struct {
			flag, v string
			to      *time.Time
		}{{"--from", *from, &q.From}, {"--to", *to, &q.To}} {
			if tm.v == "" {
				continue
			}
			if *tm.to, err = time.Parse(time.RFC3339, tm.v); err != nil {
				fmt.Fprintf(stderr, "ehrbridge log find: %s: give a time as 2026-01-02T15:04:05Z (RFC 3339)\n", tm.flag)
				return exitUsage
			}
		}
		if len(pos) > 0 {
			fmt.Fprintln(stderr, "ehrbridge log find: takes flags only (--mrn AUTHORITY|MRN, --state, --type, ...)")
			return exitUsage
		}
		v, err := svc.Find(me, q)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			v.Records = nonNil(v.Records)
			return printJSON(stdout, v)
		}
		printList(stdout, v.Records, nil)
		switch {
		case v.Partial:
			fmt.Fprintf(stdout, "read %d records without filling the page; more may match: --before %d\n", v.Examined, v.Next)
		case v.Next != 0:
			fmt.Fprintf(stdout, "more: --before %d\n", v.Next)
		}
	case "trace":
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		v, err := svc.Trace(me, id)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		printTrace(stdout, v)
	case "close":
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		if strings.TrimSpace(*reason) == "" {
			fmt.Fprintln(stderr, "ehrbridge log close: give --reason TEXT (why the record will not be retried)")
			return exitUsage
		}
		if err := svc.CloseRecord(me, id, *reason); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "closed record %d: it is skipped now (log retry %d puts it back)\n", id, id)
	case "resolve":
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		if *keep == *accept {
			fmt.Fprintln(stderr, "ehrbridge log resolve: give --keep (the stored message stands) or --accept (the conflicting one replaces it)")
			return exitUsage
		}
		c, err := svc.ResolveConflict(me, id, *accept)
		if err != nil {
			return fail(err)
		}
		if *accept {
			fmt.Fprintf(stdout, "conflict %d resolved: record %d now holds the conflicting message and is queued in its lane\n", id, c.RecordID)
		} else {
			fmt.Fprintf(stdout, "conflict %d resolved: record %d keeps the stored message\n", id, c.RecordID)
		}
	case "release":
		id, ok := recordID(sub, pos, stderr)
		if !ok {
			return exitUsage
		}
		if err := svc.Release(me, id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "record %d is ready to be retried now\n", id)
	}
	return exitOK
}

// recordIDs reads the record ids a retry of a selection takes.
func recordIDs(sub string, pos []string, stderr io.Writer) ([]uint64, bool) {
	var out []uint64
	for _, p := range pos {
		id, ok := recordID(sub, []string{p}, stderr)
		if !ok {
			return nil, false
		}
		out = append(out, id)
	}
	return out, true
}

func idList(ids []uint64) string {
	if len(ids) == 0 {
		return ""
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return " (" + strings.Join(s, ", ") + ")"
}

// recordID reads the one record id a subcommand takes.
func recordID(sub string, pos []string, stderr io.Writer) (uint64, bool) {
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "ehrbridge log %s: give one record id (or, for retry, --all-dead or --all-skipped)\n", sub)
		return 0, false
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge log %s: %q is not a record id\n", sub, pos[0])
		return 0, false
	}
	return id, true
}

// logTarget is where a log lives and how to reach its daemon.
type logTarget struct {
	dataDir, path string
	adminAddr     string
	adminTLS      bool   // admin.tls is set: the endpoint speaks https
	socket        string // the admin socket; "" when off
	enc           *config.EncryptionConfig
	cfg           *config.Config // nil with --data-dir
}

// laneKeys gives a patient search on the log file the lane keys the
// config's mapping set makes of an identifier, as the daemon's own search
// does; nil with --data-dir alone (the fixed forms only).
func (t *logTarget) laneKeys() func(authority, mrn string) []string {
	if t.cfg == nil {
		return nil
	}
	return func(authority, mrn string) []string {
		set, err := daemon.LoadMappings(t.cfg)
		if err != nil {
			return nil
		}
		return set.PatientLaneKeys(authority, mrn)
	}
}

func resolveLogTarget(cfgFile, dataDir string) (*logTarget, error) {
	switch {
	case cfgFile != "" && dataDir != "":
		return nil, errors.New("give --config or --data-dir, not both")
	case cfgFile != "":
		cfg, err := config.Load(cfgFile)
		if err != nil {
			return nil, fmt.Errorf("%s does not lint:\n%v", cfgFile, err)
		}
		return &logTarget{dataDir: cfg.DataDir, path: filepath.Join(cfg.DataDir, checkpoint.FileName),
			adminAddr: cfg.Admin.Listen, adminTLS: cfg.Admin.TLS != nil, socket: cfg.Admin.SocketPath(cfg.DataDir), enc: cfg.Checkpoint.Encryption,
			cfg: cfg}, nil
	case dataDir != "":
		return &logTarget{dataDir: dataDir, path: filepath.Join(dataDir, checkpoint.FileName),
			socket: (&config.AdminConfig{}).SocketPath(dataDir)}, nil
	}
	return nil, errors.New("give --config FILE or --data-dir DIR")
}

// service asks the running daemon over its admin socket when it answers
// there (the daemon knows the caller from the OS), else opens the log
// directly, else, when the daemon holds the file, asks its admin endpoint
// over TCP. With EHRBRIDGE_ADMIN_URL set it asks that endpoint at once.
func (t *logTarget) service(write bool) (logadmin.Service, func(), error) {
	if os.Getenv(adminURLEnv) != "" {
		c, err := t.tcpClient()
		if err != nil {
			return nil, nil, err
		}
		return c, func() {}, nil
	}
	if c := t.socketClient(); c != nil {
		return c, func() {}, nil
	}
	keyring, err := t.enc.Keyring()
	if err != nil {
		return nil, nil, err
	}
	l, err := checkpoint.Open(t.path, checkpoint.Options{ReadOnly: !write, LockTimeout: 300 * time.Millisecond,
		Keyring: keyring, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		return &logadmin.Local{Log: l, Audit: logadmin.NewAudit(t.dataDir), Via: "cli", LaneKeys: t.laneKeys()}, func() { l.Close() }, nil
	}
	if !errors.Is(err, checkpoint.ErrLocked) {
		return nil, nil, err
	}
	c, err := t.tcpClient()
	if err != nil {
		return nil, nil, err
	}
	return c, func() {}, nil
}

// socketClient is a client over the admin socket (Windows: the named
// pipe) when a daemon answers on it, else nil (none, a stale socket, or
// another platform).
func (t *logTarget) socketClient() *logadmin.Client {
	if t.socket == "" || !logadmin.LocalAnswers(t.socket) {
		return nil
	}
	return &logadmin.Client{BaseURL: "http://ehrbridge", Socket: t.socket}
}

// tcpClient is a client of the admin endpoint over TCP: as the account
// named in EHRBRIDGE_ADMIN_ACCOUNT with the token in EHRBRIDGE_ADMIN_TOKEN
// when they are set, else as the local OS user (Linux, loopback). The
// endpoint is EHRBRIDGE_ADMIN_URL, else admin.listen of the config (https
// when admin.tls is set); an https endpoint is verified against the CAs in
// EHRBRIDGE_ADMIN_CA (default: the system's), and EHRBRIDGE_ADMIN_CERT and
// EHRBRIDGE_ADMIN_KEY give a client certificate for mutual TLS.
func (t *logTarget) tcpClient() (*logadmin.Client, error) {
	base := os.Getenv(adminURLEnv)
	switch {
	case base != "":
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("%s: give http(s)://host:port, without credentials (they go in %s and %s)", adminURLEnv, adminAccountEnv, adminTokenEnv)
		}
		base = u.Scheme + "://" + u.Host
	case t.adminAddr == "":
		return nil, fmt.Errorf("the daemon is running and holds the log, and answers on no admin socket; pass --config so that its admin endpoint can be asked, or set %s", adminURLEnv)
	case t.adminTLS:
		base = "https://" + t.adminAddr
	default:
		base = "http://" + t.adminAddr
	}
	c := &logadmin.Client{BaseURL: base}
	tc, err := adminClientTLS(strings.HasPrefix(base, "https://"))
	if err != nil {
		return nil, err
	}
	c.TLS = tc
	if name := os.Getenv(adminAccountEnv); name != "" {
		c.Account, c.Secret = name, os.Getenv(adminTokenEnv)
		if c.Secret == "" {
			return nil, fmt.Errorf("%s is set but %s is not", adminAccountEnv, adminTokenEnv)
		}
	}
	return c, nil
}

// The admin account the CLI uses over TCP, and the endpoint.
const (
	adminAccountEnv = "EHRBRIDGE_ADMIN_ACCOUNT"
	adminTokenEnv   = "EHRBRIDGE_ADMIN_TOKEN"
	adminURLEnv     = "EHRBRIDGE_ADMIN_URL"
	adminCAEnv      = "EHRBRIDGE_ADMIN_CA"
	adminCertEnv    = "EHRBRIDGE_ADMIN_CERT"
	adminKeyEnv     = "EHRBRIDGE_ADMIN_KEY"
)

// adminClientTLS is the TLS configuration of the CLI's https client (nil
// for http, where the TLS variables are refused rather than ignored).
func adminClientTLS(https bool) (*tls.Config, error) {
	ca, cert, key := os.Getenv(adminCAEnv), os.Getenv(adminCertEnv), os.Getenv(adminKeyEnv)
	if !https {
		if ca != "" || cert != "" || key != "" {
			return nil, fmt.Errorf("%s, %s or %s is set but the admin endpoint is http://: set admin.tls, or %s=https://...", adminCAEnv, adminCertEnv, adminKeyEnv, adminURLEnv)
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", adminCAEnv, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", adminCAEnv, ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("give both %s and %s, or neither", adminCertEnv, adminKeyEnv)
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", adminCertEnv, adminKeyEnv, err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// logBackup copies the log to file: from the file itself when the daemon
// is stopped, else through the daemon's admin endpoint, which copies it in
// one read transaction while it keeps running. The copy is then opened
// and checked.
func logBackup(t *logTarget, file string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ehrbridge log backup: %v\n", err)
		return exitFailure
	}
	via := "the log file"
	var l *checkpoint.Log
	err := checkpoint.ErrLocked
	var sc *logadmin.Client
	if os.Getenv(adminURLEnv) != "" {
		// Asked for by name: the daemon at that endpoint.
		var cerr error
		if sc, cerr = t.tcpClient(); cerr != nil {
			return fail(cerr)
		}
	} else {
		sc = t.socketClient()
	}
	if sc == nil {
		l, err = checkpoint.Open(t.path, checkpoint.Options{ReadOnly: true, LockTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}
	switch {
	case err == nil:
		// The copy holds every payload: audited like a reveal.
		if err = logadmin.NewAudit(t.dataDir).Record("backup", "checkpoint log", "cli", ""); err == nil {
			_, err = l.BackupFile(file)
		}
		l.Close()
	case errors.Is(err, checkpoint.ErrLocked):
		c := sc
		if c == nil {
			var cerr error
			if c, cerr = t.tcpClient(); cerr != nil {
				return fail(cerr)
			}
		}
		via = "the running daemon"
		_, err = checkpoint.WriteFileAtomic(file, c.Backup)
	}
	if err != nil {
		return fail(err)
	}
	b, err := checkpoint.Open(file, checkpoint.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fail(fmt.Errorf("the copy does not open: %w", err))
	}
	defer b.Close()
	problems, err := b.Check()
	if err != nil || len(problems) > 0 {
		return fail(fmt.Errorf("the copy does not check clean: %v %v", problems, err))
	}
	st, err := b.Stats()
	if err != nil {
		return fail(err)
	}
	pending := st.States[checkpoint.Received] + st.States[checkpoint.InProgress] + st.States[checkpoint.Retrying]
	fmt.Fprintf(stdout, "backed up %s (from %s) to %s: %s, %d records pending, %d done, %d skipped, %d dead, schema %d; checked clean\n",
		t.path, via, file, humanBytes(st.FileSize), pending, st.States[checkpoint.Done], st.States[checkpoint.Skipped], st.States[checkpoint.Dead], st.Schema)
	if st.Encrypted {
		fmt.Fprintln(stdout, "the payloads are encrypted: keep the key (and any previous keys) with the backup, apart from it")
		if st.SealCounted && st.Seal.Unencrypted+st.Seal.Other+st.Seal.LegacyReasons > 0 {
			fmt.Fprintf(stdout, "but %d records (and %d other values) were stored before encryption was enabled and are in clear in it: run `ehrbridge log reseal`, then back up again\n",
				st.Seal.Unencrypted, st.Seal.Other+st.Seal.LegacyReasons)
		}
	} else {
		fmt.Fprintln(stdout, "the payloads are NOT encrypted: the backup holds patient data in clear; store it as such")
	}
	return exitOK
}

func logCompact(t *logTarget, stdout, stderr io.Writer) int {
	res, err := checkpoint.Compact(t.path)
	if err != nil {
		if errors.Is(err, checkpoint.ErrLocked) {
			fmt.Fprintln(stderr, "ehrbridge log compact: the daemon is running: stop it first (compaction rewrites the file)")
		} else {
			fmt.Fprintf(stderr, "ehrbridge log compact: %v\n", err)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "compacted %s: %s → %s\n", t.path, humanBytes(res.Before), humanBytes(res.After))
	return exitOK
}

func logCheck(t *logTarget, stdout, stderr io.Writer) int {
	l, err := checkpoint.Open(t.path, checkpoint.Options{ReadOnly: true, LockTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if errors.Is(err, checkpoint.ErrLocked) {
			fmt.Fprintln(stderr, "ehrbridge log check: the daemon is running: stop it first")
		} else {
			fmt.Fprintf(stderr, "ehrbridge log check: %v\n", err)
		}
		return exitFailure
	}
	defer l.Close()
	problems, err := l.Check()
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge log check: %v\n", err)
		return exitFailure
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "ehrbridge log check: %d problem(s) in %s\n", len(problems), t.path)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok\n", t.path)
	return exitOK
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printStats(w io.Writer, st logadmin.StatsView, path string) {
	var parts []string
	for _, s := range checkpoint.States {
		parts = append(parts, fmt.Sprintf("%s %d", strings.ReplaceAll(s.String(), "_", " "), st.States[s.String()]))
	}
	fmt.Fprintf(w, "records:         %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "done:            %d applied (those with warnings: log list --state warned)\n", st.States[checkpoint.Done.String()])
	fmt.Fprintf(w, "skipped:         %d stored and acknowledged, no mapping accepts them (log list --state skipped)\n", st.States[checkpoint.Skipped.String()])
	if st.OldestPending != nil {
		fmt.Fprintf(w, "oldest pending:  %s (%s ago)\n", st.OldestPending.Format(time.RFC3339), time.Duration(st.OldestPendingAge*float64(time.Second)).Round(time.Second))
	} else {
		fmt.Fprintln(w, "oldest pending:  none")
	}
	fmt.Fprintf(w, "conflicts:       %d\n", st.Conflicts)
	enc := "no (configure checkpoint.encryption)"
	if st.Encrypted {
		enc = "yes"
	}
	fmt.Fprintf(w, "file:            %s, %s, encrypted: %s\n", path, humanBytes(st.FileBytes), enc)
	printSeal(w, st.Seal)
	if st.Schema > 0 {
		fmt.Fprintf(w, "schema:          %d (this ehrbridge writes %d), last written by %s\n", st.Schema, checkpoint.SchemaVersion(), orUnknown(st.WrittenBy))
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown program"
	}
	return s
}

func printList(w io.Writer, recs []logadmin.RecordView, confs []logadmin.ConflictView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if confs != nil {
		fmt.Fprintln(tw, "CONFLICT\tRECORD\tRECEIVED\tTYPE\tKEY")
		for _, c := range confs {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", c.ID, c.RecordID, c.Received.Format(time.RFC3339), c.Type, c.Key)
		}
	} else {
		fmt.Fprintln(tw, "ID\tSTATE\tRECEIVED\tTYPE\tATTEMPTS\tKEY\tREASON")
		for _, r := range recs {
			state := r.State
			if r.Warned {
				state += " (warnings)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, state, r.Received.Format(time.RFC3339), r.Type, r.Attempts, r.Key, r.Reason)
		}
	}
	tw.Flush()
}

func printRecord(w io.Writer, r logadmin.RecordView, reveal bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%d\nkey\t%s\nsource\t%s\ntype\t%s\nstate\t%s\nreceived\t%s\nattempts\t%d\n",
		r.ID, r.Key, r.Source, r.Type, r.State, r.Received.Format(time.RFC3339Nano), r.Attempts)
	if r.ReadyAt != nil {
		fmt.Fprintf(tw, "ready at\t%s\n", r.ReadyAt.Format(time.RFC3339Nano))
	}
	switch {
	case r.Warned:
		fmt.Fprintf(tw, "warnings\t%s\n", strings.TrimPrefix(r.Reason, checkpoint.WarningsPrefix))
	case r.Reason != "":
		fmt.Fprintf(tw, "reason\t%s\n", r.Reason)
	}
	if r.DoneAt != nil {
		at := "done at"
		if r.State == checkpoint.Skipped.String() {
			at = "skipped at"
		}
		fmt.Fprintf(tw, "%s\t%s\n", at, r.DoneAt.Format(time.RFC3339Nano))
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(tw, "targets\t%s\n", strings.Join(r.Targets, ", "))
	}
	payload := fmt.Sprintf("%d bytes", r.PayloadBytes)
	if r.PayloadDropped {
		payload += " (dropped by retention)"
	}
	fmt.Fprintf(tw, "lane\t%s\ncontent hash\t%s\npayload\t%s\n", r.Lane, r.ContentHash, payload)
	tw.Flush()
	if r.Ack == "" {
		fmt.Fprintf(w, "ack: none sent (MSH-15/MSH-16 asked for none)\n")
	} else {
		fmt.Fprintf(w, "ack:\n%s\n", indentSegments(r.Ack))
	}
	if reveal {
		if r.Detail != "" {
			fmt.Fprintf(w, "the CRM's message (revealed, audited):\n  %s\n", r.Detail)
		}
		fmt.Fprintf(w, "payload (revealed, audited):\n%s\n", indentSegments(r.Payload))
	}
}

// printTrace prints `log trace`: the record, its history, its patient's
// records in lane order.
func printTrace(w io.Writer, v logadmin.TraceView) {
	printRecord(w, v.Record, false)
	if v.NextRetry != nil && v.Record.State == checkpoint.Retrying.String() {
		fmt.Fprintf(w, "next retry: %s\n", v.NextRetry.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "history:")
	if len(v.History) == 0 {
		fmt.Fprintln(w, "  none yet (never tried)")
	}
	for _, e := range v.History {
		line := e.At.Format(time.RFC3339) + "  " + e.Kind
		if e.State != "" {
			line += " → " + e.State
		}
		if e.Actor != "" {
			line += " by " + e.Actor
		}
		if e.Conflict != 0 {
			line += fmt.Sprintf(" (conflict %d)", e.Conflict)
		}
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		if e.Code != "" && !strings.Contains(e.Reason, e.Code) {
			line += " [code " + e.Code + "]"
		}
		if e.Object != "" && !strings.Contains(e.Reason, e.Object) {
			line += fmt.Sprintf(" [op %d on %s]", e.Op, e.Object)
		}
		if len(e.Targets) > 0 {
			line += "; ids " + strings.Join(e.Targets, ", ")
		}
		if e.RetryAt != nil {
			line += "; next try " + e.RetryAt.Format(time.RFC3339)
		}
		fmt.Fprintln(w, "  "+line)
	}
	fmt.Fprintln(w, "the patient's records, in lane order:")
	if v.Lane.Truncated {
		fmt.Fprintf(w, "  (the newest %d)\n", len(v.Lane.Records))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range v.Lane.Records {
		mark := ""
		if r.ID == v.Record.ID {
			mark = "*"
		}
		holds := ""
		if r.Holds {
			holds = "holds the lane"
		}
		fmt.Fprintf(tw, "  %s%d\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, r.ID, r.Received.Format(time.RFC3339), r.Type, r.State, holds,
			strings.Join(r.Targets, ","), r.Reason)
	}
	tw.Flush()
	if v.Lane.Holder == 0 {
		fmt.Fprintln(w, "nothing holds the lane")
	}
}

func printConflict(w io.Writer, c logadmin.ConflictView) {
	fmt.Fprintf(w, "conflict %d: key %s already used by record %d\nreceived %s, type %s, %d bytes, content hash %s\n",
		c.ID, c.Key, c.RecordID, c.Received.Format(time.RFC3339Nano), c.Type, c.PayloadBytes, c.ContentHash)
	if c.Payload != "" {
		fmt.Fprintf(w, "payload (revealed, audited):\n%s\n", indentSegments(c.Payload))
	}
}

func indentSegments(s string) string {
	s = strings.TrimRight(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s), "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
