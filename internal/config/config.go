package config

import (
	"fmt"
	"os"
	"reflect"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/writeback"
)

// Config is the whole ehrbridge configuration file.
type Config struct {
	// DataDir holds the daemon's durable state. Default "./data", relative
	// to the config file's directory.
	DataDir string        `yaml:"data_dir"`
	Log     LogConfig     `yaml:"log"`
	Admin   AdminConfig   `yaml:"admin"`
	Sources SourcesConfig `yaml:"sources"`
	// Checkpoint configures the durable log in DataDir.
	Checkpoint CheckpointConfig `yaml:"checkpoint"`
	// Mappings are the mapping files that turn messages into CRM ops.
	Mappings MappingsConfig `yaml:"mappings"`
	// CRM is where the ops go; nil stores messages without forwarding.
	CRM *CRMConfig `yaml:"crm"`
	// Writeback files coordinators' notes from the CRM in the EHR.
	Writeback *WritebackConfig `yaml:"writeback"`

	// pos records where each key was written, for later problems.
	pos positions
	// insecure lists the opt-outs in use ([Config.Insecure]).
	insecure []InsecureSetting
}

// LogConfig configures the daemon's own logs.
type LogConfig struct {
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
	// Output is "stderr" (default), "stdout" or a file path, resolved
	// against the config file's directory.
	Output string `yaml:"output"`
	// HashKey is the optional key for hashing record keys in logs
	// (hash_key_env / hash_key_file). Without it hashes only correlate
	// within one process run.
	HashKey SecretRef `yaml:"hash_key"`
}

// AdminConfig configures the admin HTTP server.
type AdminConfig struct {
	// Listen is the admin server's host:port, default "127.0.0.1:8080".
	// Writing "" or "off" disables the server; a loaded Config then holds "".
	// Without TLS it serves plain HTTP, so an address that is not
	// loopback needs TLS or InsecurePlaintext.
	Listen string `yaml:"listen"`
	// TLS, when set, serves Listen over HTTPS only (a plain HTTP request
	// is answered 400 and served nothing), with optional mutual TLS
	// (client_ca_file, allowed_clients) as the MLLP listener takes it.
	// Callers still need an account or an OS identity for a role.
	TLS *TLSServer `yaml:"tls"`
	// InsecurePlaintext allows Listen on an address that is not loopback
	// without TLS (see [InsecureKey]).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// Socket is the admin API's Unix socket (Linux), where the caller's
	// identity comes from the kernel (SO_PEERCRED), or on Windows its named
	// pipe (\\.\pipe\NAME), where it comes from the client's token.
	// Empty means <data_dir>/admin.sock (Windows: [AdminPipeName]); "off"
	// disables it. Use [AdminConfig.SocketPath]. Created mode 0660.
	Socket string `yaml:"socket"`
	// SocketGroup is the group the socket is given (default: the
	// daemon's), so that its members can connect; on Windows a group
	// (DOMAIN\name or SID) the pipe's DACL lets read and write.
	SocketGroup string `yaml:"socket_group"`
	// Roles gives local OS users and groups (callers over the socket, or
	// over loopback TCP on Linux, or the pipe on Windows: DOMAIN\name or
	// SID) their roles. Root and the daemon's own user (Windows: SYSTEM,
	// elevated Administrators, the service account) hold every role
	// without an entry.
	Roles []AdminRole `yaml:"roles"`
	// Accounts are the named accounts that reach the admin endpoint over
	// TCP with HTTP Basic authentication (name and the account's token).
	Accounts []AdminAccount `yaml:"accounts"`
	// PublicCounts lets callers without a role read counts only on /,
	// /status and /metrics (for monitoring agents); without it those need
	// the viewer role.
	PublicCounts bool `yaml:"public_counts"`

	socketOff bool // Socket was written "off"
}

// AdminRoles are the roles of the admin endpoint: viewer (counts, states,
// lists and record metadata), operator (viewer, and retry/requeue) and
// auditor (viewer, and revealing payloads and backups).
var AdminRoles = []string{"viewer", "operator", "auditor"}

// AdminRole gives a local OS user or group a role.
type AdminRole struct {
	User  string `yaml:"user"`
	Group string `yaml:"group"`
	Role  string `yaml:"role"`
}

// AdminAccount is a named account for the admin endpoint over TCP. Its
// token is given by reference (token_env / token_file), never inline.
type AdminAccount struct {
	Name  string    `yaml:"name"`
	Role  string    `yaml:"role"`
	Token SecretRef `yaml:"token"`
}

// InsecureKey is the key, on every listener and URL-bearing section, that
// allows a plaintext listener on an address that is not loopback or an
// http:// URL to a host that is not loopback. Without it such a config
// does not load: patient data would cross the network in clear (45 CFR
// 164.312(e)(1), transmission security). With it the daemon warns at
// start and lists the setting on /status ([Config.Insecure]).
const InsecureKey = "insecure_plaintext"

// SourcesConfig lists the inbound message sources. None is required: an
// admin-only run is valid.
type SourcesConfig struct {
	MLLP []MLLPSource `yaml:"mllp"`
	FHIR []FHIRSource `yaml:"fhir"`
}

// FHIRSource is an EHR's FHIR R4 server that ehrbridge polls for changes.
type FHIRSource struct {
	// FHIRSourceConfig is what the source follows, declared with it
	// (ehr.FHIRSourceConfig): name (part of record keys, as for MLLP
	// sources: [a-z0-9][a-z0-9_-]*, unique among all sources), types,
	// page_size, overlap, deletes ("ignore", the default, or
	// "inactivate"), bulk_max_line and bulk_max_file.
	ehr.FHIRSourceConfig `yaml:",inline"`
	// BaseURL is the server's base, like https://ehr.example/fhir/R4.
	BaseURL string `yaml:"base_url,required"`
	// AuthConfig: a static bearer token (token_env / token_file), or SMART
	// Backend Services (smart_token_url, smart_client_id, smart_key_file).
	fhirhttp.AuthConfig `yaml:",inline"`
	// Schedule of the polls; default "@every 30s".
	Schedule string `yaml:"schedule"`
	// InsecurePlaintext allows an http:// BaseURL or SMARTTokenURL whose
	// host is not loopback (see [InsecureKey]).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// Subscription, when set, also takes the server's subscription
	// notifications on an HTTPS endpoint, between polls.
	Subscription *FHIRSubscription `yaml:"subscription"`
}

// FHIRSubscription is the endpoint a FHIR server's subscriptions notify
// (rest-hook): R4 full-resource and empty "ping" notifications, and
// R4B/R5 subscription-notification Bundles.
type FHIRSubscription struct {
	// Listen is the host:port of the endpoint.
	Listen string `yaml:"listen,required"`
	// Path is where notifications are posted; default /fhir/notify.
	Path string `yaml:"path"`
	// Header carries the shared secret (the subscription's
	// channel.header); default Authorization, which expects
	// "Bearer <secret>".
	Header string `yaml:"header"`
	// Secret (secret_env / secret_file) authenticates the server; it may
	// be left out only when mutual TLS (tls.client_ca_file) does.
	Secret SecretRef `yaml:"secret"`
	// TLS serves HTTPS; required unless Listen is a loopback address or
	// InsecurePlaintext is set.
	TLS *TLSServer `yaml:"tls"`
	// InsecurePlaintext allows plain HTTP on an address that is not
	// loopback (see [InsecureKey]).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
}

// MLLPSource is one HL7 v2 over MLLP listener, declared with the source
// ([ehr.MLLPSourceConfig]).
type MLLPSource = ehr.MLLPSourceConfig

// CheckpointConfig configures the checkpoint log: retention and
// encryption at rest, declared with it ([checkpoint.Settings]).
type CheckpointConfig = checkpoint.Settings

// MappingsConfig names the mapping set.
type MappingsConfig struct {
	// Paths are mapping files or directories of them (*.yaml, tests
	// *_test.yaml beside them), resolved against the config file's
	// directory.
	Paths []string `yaml:"paths"`
	// Timezone is the IANA zone of HL7 times written without an offset;
	// default the machine's local zone. A mapping may name its own.
	Timezone string `yaml:"timezone"`
	// Schemas are CRM schema files (Salesforce describe JSON, Dataverse
	// entity metadata) that lint checks target fields and keys against.
	Schemas []string `yaml:"schemas"`
	// Watch reloads the mappings when a file changes (they are always
	// reloaded on SIGHUP).
	Watch bool `yaml:"watch"`
}

// CRMConfig names the CRM and how records are sent to it.
type CRMConfig struct {
	// Salesforce is the org to write to.
	Salesforce *SalesforceConfig `yaml:"salesforce"`
	// Dynamics is the Dataverse environment to write to instead.
	Dynamics *DynamicsConfig `yaml:"dynamics"`
	// Sandbox makes the CRM sandbox the CRM instead (its Salesforce or
	// its Dataverse side): embedded, or running apart.
	Sandbox *SandboxConfig `yaml:"sandbox"`
	// Pipeline tunes the sending.
	Pipeline PipelineConfig `yaml:"pipeline"`
}

// SalesforceConfig is a Salesforce org and its connected app, declared
// with the connector ([salesforce.Settings]).
type SalesforceConfig = salesforce.Settings

// DynamicsConfig is a Dataverse environment (Dynamics 365) and the app
// registration ehrbridge signs in as, declared with the connector
// ([dynamics.Settings]).
type DynamicsConfig = dynamics.Settings

// SandboxConfig makes the CRM sandbox the CRM (for demos and tests),
// declared with the sandbox ([sandbox.Settings]).
type SandboxConfig = sandbox.Settings

// PipelineConfig tunes the CRM pipeline, declared with it
// ([pipeline.Settings]).
type PipelineConfig = pipeline.Settings

// WritebackConfig files notes from the CRM in the EHR.
type WritebackConfig struct {
	// Schedule is when to look for notes: a cron spec or "@every 30s";
	// default "@every 30s".
	Schedule string `yaml:"schedule"`
	// Config holds the keys the write-back engine reads itself, declared
	// with it (writeback.Config's tagged fields): object and flag_field
	// (the note object and its "send to the EHR" checkbox; default Task
	// and Send_to_EHR__c), doc_prefix (TXA-12; default "EHRB-"),
	// sending_application ... receiving_facility (MSH-3 to MSH-6),
	// author_field and author_required, encounter_rule (PV1-19:
	// link_or_open, the default, link, open or none),
	// encounter_link_field and encounter_required, replace_trigger (T10,
	// the default, T08, T06 or T02). Its untagged fields are not read
	// from the file.
	writeback.Config `yaml:",inline"`
	// AuthorsFile maps CRM user ids to EHR provider ids: CSV lines
	// crm_user_id,provider_id. Looked up first.
	AuthorsFile string `yaml:"authors_file"`
	// MDMMapping is the hl7 output mapping file that builds
	// the MDM message; default the built-in one, shipped as
	// configs/mappings/writeback/mdm.yaml.
	MDMMapping string `yaml:"mdm_mapping"`
	// Target is where documents go: a directory (file drop) or an MLLP
	// receiver.
	Target WritebackTarget `yaml:"target"`
}

// WritebackTarget is the EHR side of write-back: one of its fields.
type WritebackTarget struct {
	// FileDropConfig is the file drop, declared with it
	// (ehr.FileDropConfig): dir, the file-drop directory (default
	// <data_dir>/outbox); retention, how long a message the EHR left
	// there may stay (0, the default, keeps them; at least 1h; only with
	// dir).
	ehr.FileDropConfig `yaml:",inline"`
	// MLLPTargetConfig is the MLLP target, declared with it
	// (ehr.MLLPTargetConfig): mllp, the EHR's MLLP receiver (host:port);
	// tls, to connect over TLS (mutual TLS with a client certificate;
	// without it a host that is not loopback needs InsecurePlaintext;
	// only with mllp); mllp_max_backoff, the cap of the delays between
	// tries when the receiver refuses or drops connections (they start at
	// 100 ms and double; default 30s, between 1s and 1h; only with mllp).
	ehr.MLLPTargetConfig `yaml:",inline"`
	// InsecurePlaintext allows MLLP without TLS to a host that is not
	// loopback (see [InsecureKey]).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// AEMaxAttempts is how many AE (or CE) answers a note gets before it is
	// dead: an AE asks for a resend (HL7 table 0008), so the note is resent
	// with backoff until then; default 10, 1 to 1000. Only with MLLP.
	AEMaxAttempts int `yaml:"ae_max_attempts"`
	// FHIR is the EHR's FHIR R4 server: DocumentReference.
	FHIR *FHIRTarget `yaml:"fhir"`
}

// FHIRTarget is an EHR's FHIR R4 server for write-back.
type FHIRTarget struct {
	// FHIRTargetConfig is the server, declared with the target
	// (ehr.FHIRTargetConfig): base_url, token_env / token_file or
	// smart_token_url, smart_client_id and smart_key_file, doc_system and
	// type_code.
	ehr.FHIRTargetConfig `yaml:",inline"`
	// InsecurePlaintext allows an http:// BaseURL or SMARTTokenURL whose
	// host is not loopback (see [InsecureKey]).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
}

// EncryptionConfig names the payload keys, declared with the log
// ([checkpoint.EncryptionSettings]).
type EncryptionConfig = checkpoint.EncryptionSettings

// KeyRef is one previous key (key_env / key_file), [checkpoint.KeyRef].
type KeyRef = checkpoint.KeyRef

// Default values that are not obvious from the zero value.
const (
	DefaultDataDir        = "./data"
	DefaultAdminListen    = "127.0.0.1:8080"
	DefaultMaxFrameSize   = ehr.DefaultMaxFrameSize
	DefaultReadTimeout    = ehr.DefaultReadTimeout
	DefaultIdleTimeout    = ehr.DefaultIdleTimeout
	DefaultFirstFrame     = ehr.DefaultFirstFrame
	DefaultWriteTimeout   = ehr.DefaultWriteTimeout
	DefaultMaxConnections = ehr.DefaultMaxConnections
	DefaultTLSMinVersion  = configvalue.DefaultTLSMinVersion

	DefaultDedupeWindow     = Duration(checkpoint.DefaultDedupeWindow)
	DefaultPayloadRetention = Duration(checkpoint.DefaultPayloadRetention)
	// DefaultSandboxListen is the embedded CRM sandbox's address.
	DefaultSandboxListen = sandbox.DefaultListen
	// DefaultSandboxTLSListen is the address of its TLS (Dataverse) side.
	DefaultSandboxTLSListen = sandbox.DefaultTLSListen
	DefaultSweepInterval    = Duration(checkpoint.DefaultSweepInterval)
)

// Default returns the configuration an empty file gives: every default
// filled in, no sources, paths not yet resolved against any directory.
func Default() *Config {
	c := &Config{
		DataDir: DefaultDataDir,
		Log:     LogConfig{Format: "text", Level: "info", Output: "stderr"},
		Admin:   AdminConfig{Listen: DefaultAdminListen},
	}
	c.Checkpoint.SetDefaults()
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(string, *SecretRef) {})
	return c
}

// Load reads the file at path and returns its configuration, or nil and a
// [Problems] error listing every problem found. Environment references are
// expanded from the process environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: "cannot read: " + fileErrText(err)}}
	}
	return Parse(path, data, nil)
}

// Parse is [Load] on bytes already read: name is the file name used in
// positions and as the base for relative paths, and lookupEnv resolves
// environment references (nil means os.LookupEnv).
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	c := Default()
	pos, probs, complete := decodeDocument(name, data, lookupEnv, c)
	c.pos = pos
	base := baseDir(name)
	if !complete {
		probs = probs.Sorted()
		if len(probs) >= maxProblems {
			probs = append(probs, Problem{File: name, Msg: fmt.Sprintf("too many problems, stopped after %d", maxProblems)})
		}
		return nil, probs
	}
	probs = append(probs, checkSecrets(pos, c, base, lookupEnv)...)
	probs = append(probs, c.validate(base)...)
	if len(probs) > 0 {
		return nil, probs.Sorted()
	}
	c.resolvePaths(base)
	return c, nil
}

// resolveTLSServer makes a TLS section's files relative to base (nil: none).
func resolveTLSServer(t *TLSServer, base string) {
	if t == nil {
		return
	}
	t.CertFile = resolvePath(base, t.CertFile)
	t.KeyFile = resolvePath(base, t.KeyFile)
	t.ClientCAFile = resolvePath(base, t.ClientCAFile)
}

// resolvePaths makes the file's relative paths relative to base.
func (c *Config) resolvePaths(base string) {
	c.DataDir = resolvePath(base, c.DataDir)
	c.Admin.resolveSocket(base)
	resolveTLSServer(c.Admin.TLS, base)
	if c.Log.Output != "stderr" && c.Log.Output != "stdout" {
		c.Log.Output = resolvePath(base, c.Log.Output)
	}
	for i := range c.Sources.MLLP {
		resolveTLSServer(c.Sources.MLLP[i].TLS, base)
	}
	for i, p := range c.Mappings.Paths {
		c.Mappings.Paths[i] = resolvePath(base, p)
	}
	for i, p := range c.Mappings.Schemas {
		c.Mappings.Schemas[i] = resolvePath(base, p)
	}
	if wb := c.Writeback; wb != nil {
		if t := wb.Target.TLS; t != nil {
			t.CAFile = resolvePath(base, t.CAFile)
			t.CertFile = resolvePath(base, t.CertFile)
			t.KeyFile = resolvePath(base, t.KeyFile)
		}
		if f := wb.Target.FHIR; f != nil && f.SMARTKeyFile != "" {
			f.SMARTKeyFile = resolvePath(base, f.SMARTKeyFile)
		}
		if wb.Target.Dir == "" && wb.Target.MLLP == "" && wb.Target.FHIR == nil {
			wb.Target.Dir = resolvePath(c.DataDir, "outbox")
		} else if wb.Target.Dir != "" {
			wb.Target.Dir = resolvePath(base, wb.Target.Dir)
		}
		if wb.MDMMapping != "" {
			wb.MDMMapping = resolvePath(base, wb.MDMMapping)
		}
		if wb.AuthorsFile != "" {
			wb.AuthorsFile = resolvePath(base, wb.AuthorsFile)
		}
	}
	for i := range c.Sources.FHIR {
		if f := &c.Sources.FHIR[i]; f.SMARTKeyFile != "" {
			f.SMARTKeyFile = resolvePath(base, f.SMARTKeyFile)
		}
		if sub := c.Sources.FHIR[i].Subscription; sub != nil {
			resolveTLSServer(sub.TLS, base)
		}
	}
	if c.CRM != nil {
		if sf := c.CRM.Salesforce; sf != nil && sf.JWTKeyFile != "" {
			sf.JWTKeyFile = resolvePath(base, sf.JWTKeyFile)
		}
		if d := c.CRM.Dynamics; d != nil {
			for _, f := range []*string{&d.CertFile, &d.KeyFile, &d.CAFile} {
				if *f != "" {
					*f = resolvePath(base, *f)
				}
			}
		}
		if sb := c.CRM.Sandbox; sb != nil {
			if sb.TLSCert == "" {
				sb.TLSCert = resolvePath(c.DataDir, "sandbox-tls.pem")
			} else {
				sb.TLSCert = resolvePath(base, sb.TLSCert)
			}
			if sb.DataFile == "" {
				sb.DataFile = "sandbox.json"
				sb.DataFile = resolvePath(c.DataDir, sb.DataFile)
			} else {
				sb.DataFile = resolvePath(base, sb.DataFile)
			}
		}
	}
	resolveSecretFiles(c, base)
}

// Pos returns where the key at path ("sources.mllp[0].listen") was written.
// For a key the file leaves out it returns the position of the nearest
// enclosing section that is written, and line 0 when there is none (or c
// did not come from a file).
func (c *Config) Pos(path string) (file string, line, col int) {
	line, col = c.pos.at(path)
	return c.pos.file, line, col
}

// Problem builds a problem about the key at path, positioned as by
// [Config.Pos], with the message prefixed by "path: ".
func (c *Config) Problem(path, format string, args ...any) Problem {
	return c.pos.problem(path, format, args...)
}
