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
	timeout := fs.Duration("timeout", 30*time.Second, "how long each message may take: waiting for its acknowledgment, and any retries")
	retries := fs.Int("retries", 0, "how often to resend a message whose connection failed before its acknowledgment (with backoff, within --timeout)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge send --to HOST:PORT [--tls-ca F --tls-cert F --tls-key F] [--timeout D] [--retries N] FILE...")
		fmt.Fprintln(stderr, "Sends every message in the files on one connection and prints, per message:")
		fmt.Fprintln(stderr, "  <MSH-10> <MSA-1> [<MSA-3>]   or   <MSH-10> ERROR <reason>")
		fmt.Fprintln(stderr, "It waits for the answers each message's MSH-15/MSH-16 ask for: the application")
		fmt.Fprintln(stderr, "ACK (past a CA); the CA alone when MSH-16 is NE or empty; where only errors are answered")
		fmt.Fprintln(stderr, "(ER/NE), 2s without one (printed as \"-\"). A refused connection is reported at")
		fmt.Fprintln(stderr, "once and the rest of the messages are not sent; a connection closed before the")
		fmt.Fprintln(stderr, "answer is an ERROR unless --retries allows a resend.")
		fmt.Fprintln(stderr, "Exits 1 unless every message is accepted (AA, or CA or silence where that is all it asks for).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *to == "" || fs.NArg() == 0 || *retries < 0 || *timeout <= 0 {
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
	// An operator's tool reports rather than hangs: one try per message
	// unless --retries, each message bounded by --timeout.
	client := &mllp.Client{
		Addr: *to, TLSConfig: tlsConf, AckTimeout: *timeout, SendTimeout: *timeout, Attempts: 1 + *retries,
		MaxBackoff: 2 * time.Second, Logger: slog.New(slog.DiscardHandler),
	}
	defer client.Close()
	failed, unsent := 0, 0
	for i, m := range msgs {
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
			var se *mllp.SendError
			if !errors.As(err, &se) && errors.Is(err, context.DeadlineExceeded) {
				reason = "no acknowledgment within " + timeout.String()
			}
			fmt.Fprintf(stdout, "%s ERROR %s\n", id, reason)
			if unreachable(err) {
				// Nothing listens there: the rest would fail the same way.
				unsent = len(msgs) - i - 1
				break
			}
			continue
		}
		if !resp.Accepted() {
			failed++
		}
		switch {
		case resp.Code == "":
			fmt.Fprintf(stdout, "%s - no error within the quiet period (MSH-15/MSH-16 ask for no answer on success)\n", id)
		case resp.Text != "":
			fmt.Fprintf(stdout, "%s %s %s\n", id, resp.Code, resp.Text)
		default:
			fmt.Fprintf(stdout, "%s %s\n", id, resp.Code)
		}
	}
	if failed > 0 || unsent > 0 {
		fmt.Fprintf(stderr, "ehrbridge send: %d of %d message(s) not accepted", failed+unsent, len(msgs))
		if unsent > 0 {
			fmt.Fprintf(stderr, " (%d not sent: %s cannot be reached)", unsent, *to)
		}
		fmt.Fprintln(stderr)
		return exitFailure
	}
	return exitOK
}

// unreachable reports whether a send failed because no connection could be
// made at all (refused, no route, DNS), as opposed to one that was lost.
func unreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &dns)
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
