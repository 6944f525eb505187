package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/sandbox"
)

const sandboxUsage = `usage: ehrbridge sandbox [--listen 127.0.0.1:8089] [--data FILE] [--client-id ID] [--client-secret-env VAR]
                         [--jwt-cert FILE] [--daily-limit N]

Runs the CRM sandbox alone: the Salesforce REST subset ehrbridge's connector
uses (OAuth token, sObjects, upsert by external id, sObject Collections,
SOQL query with paging, limits), in memory or kept in --data, with
fault injection under /sandbox/v1/faults. For tests and demos: it is not
Salesforce, and it holds no real patient data unless you send it some.`

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
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	opts := sandbox.Options{ClientID: *clientID, DataFile: *data, DailyLimit: *daily,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *secretEnv != "" {
		secret, ok := os.LookupEnv(*secretEnv)
		if !ok || secret == "" {
			fmt.Fprintf(stderr, "ehrbridge sandbox: environment variable %s is not set\n", *secretEnv)
			return exitFailure
		}
		opts.ClientSecret = secret
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
