package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

const sandboxUsage = `usage: ehrbridge sandbox [--listen 127.0.0.1:8089] [--tls-listen 127.0.0.1:8443] [--data FILE]
                         [--client-id ID] [--client-secret-env VAR] [--jwt-cert FILE] [--daily-limit N]
                         [--tls-cert FILE --tls-key FILE] [--tenant T] [--dataverse-client-id ID]
                         [--dataverse-secret-env VAR] [--dataverse-cert FILE] [--dataverse-limit N]

Runs the CRM sandbox alone, for tests and demos: it is not Salesforce or
Dataverse, and it holds no real patient data unless you send it some.

Salesforce side (plain HTTP on --listen, and on the TLS address too): the
REST subset ehrbridge's connector uses (OAuth token, sObjects, upsert by
external id, sObject Collections, SOQL query with paging, limits). It knows
the published Salesforce schema of the Health Cloud objects the shipped sets
write, plus the fields deploy/salesforce creates, and refuses what Salesforce
refuses: unknown objects (NOT_FOUND) and fields (INVALID_FIELD), values
outside a restricted picklist, text over a field's length, required fields
missing on create. --schema adds the org's own describe files (the files
"ehrbridge lint --schema" reads); --no-schema accepts any object and field.

Dataverse side (on --tls-listen, default $EHRBRIDGE_SANDBOX_TLS_ADDR or
127.0.0.1:8443; "off" disables): the Microsoft identity platform token
endpoints azidentity uses (https only) and the Web API under /api/data/v9.2/.
It knows the Healthcare Accelerator tables the shipped set writes
(internal/sandbox/dvschema.json, Dataverse EntityDefinitions from the
published metadata) and serves them read-only as the Web API does
(EntityDefinitions(LogicalName='x') with $select/$expand, the attribute type
casts, WhoAmI); --schema also takes an org's saved EntityDefinitions
responses, which extend or override those tables.
The TLS certificate is made on first start and kept in --tls-cert / --tls-key
(default sandbox-tls.pem and sandbox-tls-key.pem beside --data, else in the
user's cache directory, ehrbridge/sandbox; never the current directory);
give --tls-cert to a client to trust.

Records are in memory or kept in --data; faults are injected under
/sandbox/v1/faults.`

func cmdSandbox(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, sandboxUsage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:8089", "address to listen on (host:port)")
	data := fs.String("data", "", "file that keeps the records across restarts (default: in memory)")
	clientID := fs.String("client-id", "", "connected app client id (default sandbox-client)")
	secretEnv := fs.String("client-secret-env", "", "environment variable holding the client secret (default sandbox-secret)")
	jwtCert := fs.String("jwt-cert", "", "PEM certificate that verifies JWT bearer assertions")
	daily := fs.Int("daily-limit", 0, "daily API request allocation (default 100000)")
	var schemas multiFlag
	fs.Var(&schemas, "schema", "schema file that extends the published schema: Salesforce describe JSON (GET .../sobjects/X/describe, or a list of them) or Dataverse EntityDefinitions JSON (one, or {\"value\":[...]}); repeatable")
	noSchema := fs.Bool("no-schema", false, "accept any Salesforce object and field (no schema)")
	defTLS := os.Getenv("EHRBRIDGE_SANDBOX_TLS_ADDR")
	if defTLS == "" {
		defTLS = "127.0.0.1:8443"
	}
	tlsListen := fs.String("tls-listen", defTLS, "address of the TLS side (Dataverse, identity endpoints); off disables")
	tlsCert := fs.String("tls-cert", "", "PEM certificate of the TLS side, created if missing")
	tlsKey := fs.String("tls-key", "", "PEM key of the TLS side, created if missing")
	tenant := fs.String("tenant", "", "Entra ID tenant of the Dataverse side (default sandbox-tenant)")
	dvClient := fs.String("dataverse-client-id", "", "app registration client id (default sandbox-client)")
	dvSecretEnv := fs.String("dataverse-secret-env", "", "environment variable holding the app's client secret (default sandbox-secret)")
	dvCert := fs.String("dataverse-cert", "", "PEM certificate of the app registration (certificate credentials)")
	dvLimit := fs.Int("dataverse-limit", 0, "Dataverse requests per client per 5 minutes (default 6000)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	if *noSchema && len(schemas) > 0 {
		fmt.Fprintln(stderr, "ehrbridge sandbox: --schema and --no-schema exclude each other")
		return exitUsage
	}
	opts := sandbox.Options{ClientID: *clientID, DataFile: *data, DailyLimit: *daily, Schemas: schemas, NoSchema: *noSchema,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *secretEnv != "" {
		secret, ok := os.LookupEnv(*secretEnv)
		if !ok || secret == "" {
			fmt.Fprintf(stderr, "ehrbridge sandbox: environment variable %s is not set\n", *secretEnv)
			return exitFailure
		}
		opts.ClientSecret = secret
	}
	opts.TenantID, opts.DataverseClientID, opts.DataverseRequestLimit = *tenant, *dvClient, *dvLimit
	if *dvSecretEnv != "" {
		secret, ok := os.LookupEnv(*dvSecretEnv)
		if !ok || secret == "" {
			fmt.Fprintf(stderr, "ehrbridge sandbox: environment variable %s is not set\n", *dvSecretEnv)
			return exitFailure
		}
		opts.DataverseSecret = secret
	}
	if *dvCert != "" {
		c, err := readCertificate(*dvCert)
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge sandbox: --dataverse-cert: %v\n", err)
			return exitFailure
		}
		opts.DataverseCert = c
	}
	if *jwtCert != "" {
		pemBytes, err := os.ReadFile(*jwtCert)
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
			return exitFailure
		}
		if opts.JWTKey, err = sandbox.ParseCertificate(pemBytes); err != nil {
			fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
			return exitFailure
		}
	}
	// Signals are caught before "listening" is printed: whoever waits for
	// that line may stop the sandbox at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := sandbox.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
		return exitFailure
	}
	addr, err := s.Listen(*listen)
	if err != nil {
		s.Close()
		fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
		return exitFailure
	}
	if *tlsListen != "off" && *tlsListen != "" {
		dir, err := sandboxCertDir(*data)
		if err != nil {
			s.Close()
			fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
			return exitFailure
		}
		if *tlsCert == "" {
			*tlsCert = filepath.Join(dir, "sandbox-tls.pem")
		}
		if *tlsKey == "" {
			*tlsKey = strings.TrimSuffix(*tlsCert, ".pem") + "-key.pem"
		}
		cert, _, err := sandbox.LoadOrCreateCert(*tlsCert, *tlsKey)
		if err == nil {
			var taddr net.Addr
			if taddr, err = s.ListenTLS(*tlsListen, cert); err == nil {
				fmt.Fprintf(stdout, "ehrbridge sandbox (Dataverse) listening on https://%s (token: POST /%s/oauth2/v2.0/token; Web API: /api/data/v9.2/; trust %s)\n",
					taddr, s.TenantID(), *tlsCert)
			}
		}
		if err != nil {
			s.Close()
			fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
			return exitFailure
		}
	}
	fmt.Fprintf(stdout, "ehrbridge sandbox listening on http://%s (token: POST /services/oauth2/token; records: GET /sandbox/v1/objects/{Object})\n", addr)
	<-ctx.Done()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge sandbox: %v\n", err)
			return exitFailure
		}
	case <-time.After(10 * time.Second):
		fmt.Fprintln(stderr, "ehrbridge sandbox: did not stop within 10s")
		return exitFailure
	}
	return exitOK
}

// readCertificate reads one PEM certificate.
func readCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// sandboxCertDir is where the sandbox keeps its TLS certificate and key by
// default: beside its data file, or, without one, in the user's cache
// directory (never the working directory, where a key would be left behind
// or committed).
func sandboxCertDir(data string) (string, error) {
	if data != "" {
		return filepath.Dir(data), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no --data and no user cache directory for the TLS key (give --tls-cert): %w", err)
	}
	dir := filepath.Join(cache, "ehrbridge", "sandbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}
