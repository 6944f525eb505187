package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

func cmdSend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "receiver address HOST:PORT (required)")
	tlsCA := fs.String("tls-ca", "", "PEM file of the CA that signed the receiver's certificate; enables TLS")
	tlsCert := fs.String("tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM client private key for mutual TLS")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for each acknowledgment")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge send --to HOST:PORT [--tls-ca F --tls-cert F --tls-key F] FILE...")
		fmt.Fprintln(stderr, "Sends every message in the files on one connection and prints, per message:")
		fmt.Fprintln(stderr, "  <MSH-10> <MSA-1> [<MSA-3>]")
		fmt.Fprintln(stderr, "Exits 1 unless every message is acknowledged AA (a CA before the AA is fine).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *to == "" || fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	if _, _, err := net.SplitHostPort(*to); err != nil {
		fmt.Fprintf(stderr, "ehrbridge send: --to %q: want HOST:PORT\n", *to)
		return exitUsage
	}
	tlsConf, err := clientTLS(*to, *tlsCA, *tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge send: %v\n", err)
		return exitUsage
	}
	// Read everything first: a typo in the last file should not leave half
	// the messages sent.
	var msgs [][]byte
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge send: %v\n", err)
			return exitFailure
		}
		parts, err := hl7.Split(data)
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge send: %s: %v\n", f, err)
			return exitFailure
		}
		msgs = append(msgs, parts...)
	}
	client := &mllp.Client{
		Addr: *to, TLSConfig: tlsConf, AckTimeout: *timeout, MaxBackoff: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
	defer client.Close()
	failed := 0
	for _, m := range msgs {
		id := "-"
		if hdr, err := hl7.ParseHeader(m); err == nil && hdr.Header().ControlID != "" {
			id = hdr.Header().ControlID
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		resp, err := client.Send(ctx, m)
		cancel()
		if err != nil {
			failed++
			reason := err.Error()
			if errors.Is(err, context.DeadlineExceeded) {
				reason = "no acknowledgment within " + timeout.String()
			}
			fmt.Fprintf(stdout, "%s ERROR %s\n", id, reason)
			continue
		}
		if resp.Code != hl7.AA {
			failed++
		}
		if resp.Text != "" {
			fmt.Fprintf(stdout, "%s %s %s\n", id, resp.Code, resp.Text)
		} else {
			fmt.Fprintf(stdout, "%s %s\n", id, resp.Code)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "ehrbridge send: %d of %d message(s) not accepted\n", failed, len(msgs))
		return exitFailure
	}
	return exitOK
}

func clientTLS(addr, caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	host, _, _ := net.SplitHostPort(addr)
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate found", caFile)
		}
		conf.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
