package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/bench"
)

const benchUsage = `usage: ehrbridge bench ingest [--duration 5s] [--dir D] [--conns 64]

Measures durable ingest on this machine: HL7 ADT^A01 messages over loopback
MLLP into the checkpoint log, each acknowledged AA once fsynced, over one
connection and over --conns connections, against raw bbolt commits on the
same filesystem (one Update per record; a --conns-way group commit). Then
the connections again at half the measured rate, for the ACK latency,
beside the bbolt group commit paced the same way, for the commit latency
at that load, and the checkpoint log alone (Append, no network) paced the
same way, to tell the log's share of the latency from the MLLP path's;
and once more without fsync (not durable) to show the ingest path's own
CPU and network ceiling on this machine. The phases each ratio compares
run interleaved in slices, as the disk's speed drifts. Each of the eight
phases runs for --duration in all, in fresh directories under
--dir, removed afterwards. The load generator is lean (raw frames, the
ACK checked by its bytes), as it shares the CPUs with the receiver under
test.

Prints the figures (with the cores the process used and its CPU time per
record or message, where the platform reports them) and each goal's ratio
with PASS or MISS. The exit status
is 0 whenever the figures were measured, met or not.`

func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, benchUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	if sub == "crm" {
		return benchCRM(args, stdout, stderr)
	}
	if sub == "fhir" {
		return benchFHIR(args, stdout, stderr)
	}
	if sub == "open" {
		return benchOpen(args, stdout, stderr)
	}
	if sub != "ingest" {
		fmt.Fprintf(stderr, "ehrbridge bench: unknown benchmark %q\n\n%s\n", sub, benchUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("bench ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, benchUsage)
		fs.PrintDefaults()
	}
	duration := fs.Duration("duration", bench.DefaultDuration, "how long each phase runs")
	dir := fs.String("dir", "", "where to make the phases' data directories (default the system temp directory)")
	conns := fs.Int("conns", bench.DefaultConns, "connections of the concurrent phases")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *duration <= 0 || *conns <= 0 {
		fs.Usage()
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(stderr, "ehrbridge bench ingest: 9 phases of %s, about %s in all\n", *duration, (9 * *duration).Round(time.Second))
	if _, err := bench.Ingest(ctx, bench.IngestOptions{Duration: *duration, Dir: *dir, Conns: *conns}, stdout); err != nil {
		fmt.Fprintf(stderr, "ehrbridge bench ingest: %v\n", err)
		return exitFailure
	}
	return exitOK
}

const benchOpenUsage = `usage: ehrbridge bench open [--size-mb 2048] [--dir D] [--runs 3]

Measures how long a restart keeps the EHR waiting: builds a checkpoint log
of --size-mb under --dir (removed afterwards), then times opening it until it
is ready (the log open, in-flight records recovered, counts read) with the
file dropped from the page cache first, as after a reboot or failover: in
the layout releases before issue 27 wrote (bbolt's free list not in the
file, rebuilt by walking every page) and as the log is kept now. Prints
the medians, their ratio and the goal (ready within 2 s).`

func benchOpen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench open", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, benchOpenUsage)
		fs.PrintDefaults()
	}
	sizeMB := fs.Int64("size-mb", bench.DefaultOpenSize>>20, "size of the log to build, in MiB")
	dir := fs.String("dir", "", "where to build it (default the system temp directory)")
	runs := fs.Int("runs", 3, "cold opens of each layout")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *sizeMB < 1 || *runs <= 0 {
		fs.Usage()
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := bench.OpenBench(ctx, bench.OpenOptions{Size: *sizeMB << 20, Dir: *dir, Runs: *runs}, stdout); err != nil {
		fmt.Fprintf(stderr, "ehrbridge bench open: %v\n", err)
		return exitFailure
	}
	return exitOK
}

const benchCRMUsage = `usage: ehrbridge bench crm [--crm salesforce|dataverse] [--mappings DIR] [--backlog 2000] [--patients 200]
                          [--trickle-rate 10] [--trickle-for 20s] [--latency 50ms]
                          [--outage 15s] [--outage-patients 2000] [--probe-max 30s]

Measures sending to the CRM (the embedded sandbox on loopback, its
Salesforce side with the Health Cloud mappings or its Dataverse side with
the Dataverse mappings, ADT^A08 messages with a visit): CRM API requests
per record when a backlog drains after an outage and in a trickle, the
time from a record's arrival to its being done, and the drain rate with
CRM latency injected. Then a burst of --outage-patients patients (one
message each) arriving as the CRM starts answering 503 for --outage: CRM
requests per patient, token requests, retries and probes included, and
how soon after the CRM is back the drain begins, with the pipeline's
breaker and without it (each batch retrying on its own, as before issue
27), beside the same burst to a healthy CRM; on Dataverse also the
operations it ran (its entitlement counts each request inside a $batch);
--outage -1s skips it. Prints the figures and the goals.`

func benchCRM(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench crm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, benchCRMUsage)
		fs.PrintDefaults()
	}
	crm := fs.String("crm", "salesforce", "sandbox side: salesforce or dataverse")
	maps := fs.String("mappings", "", "mapping set directory (default configs/mappings/healthcloud, or configs/mappings/dynamics for dataverse)")
	backlog := fs.Int("backlog", 2000, "records queued during the outage")
	patients := fs.Int("patients", 200, "patients the messages spread over")
	rate := fs.Float64("trickle-rate", 10, "messages per second in the trickle phase")
	trickleFor := fs.Duration("trickle-for", 20*time.Second, "length of the trickle phase")
	latency := fs.Duration("latency", 50*time.Millisecond, "CRM latency injected in the last phase")
	outage := fs.Duration("outage", 15*time.Second, "length of the 503 outage during the burst (negative: skip the outage phases)")
	outagePatients := fs.Int("outage-patients", 2000, "patients in the burst during the outage")
	probeMax := fs.Duration("probe-max", 30*time.Second, "cap of the breaker's probe interval (crm.pipeline.probe_max)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	if *crm != "salesforce" && *crm != "dataverse" {
		fs.Usage()
		return exitUsage
	}
	if *maps == "" {
		*maps = map[string]string{"salesforce": "configs/mappings/healthcloud", "dataverse": "configs/mappings/dynamics"}[*crm]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := bench.CRM(ctx, bench.CRMOptions{CRM: *crm, Mappings: *maps, Backlog: *backlog, Patients: *patients, TrickleRate: *rate,
		TrickleFor: *trickleFor, Latency: *latency, Outage: *outage, OutagePatients: *outagePatients, ProbeMax: *probeMax}, stdout); err != nil {
		fmt.Fprintf(stderr, "ehrbridge bench crm: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func benchFHIR(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench fhir", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge bench fhir [--mappings DIR] [--patients 1000] [--encounters 1] [--page-size 100] [--latency 5ms] [--bulk]")
		fmt.Fprintln(stderr, "Measures a FHIR backfill: resources/s from a paging FHIR server (in memory) into the log and on into the")
		fmt.Fprintln(stderr, "CRM sandbox, and CRM requests per resource.")
		fs.PrintDefaults()
	}
	maps := fs.String("mappings", "configs/mappings/healthcloud", "mapping set directory (its FHIR mappings)")
	patients := fs.Int("patients", 1000, "patients on the FHIR server")
	encounters := fs.Int("encounters", 1, "encounters per patient")
	pageSize := fs.Int("page-size", 100, "FHIR search _count")
	latency := fs.Duration("latency", 5*time.Millisecond, "latency of each FHIR page")
	bulk := fs.Bool("bulk", false, "read through Bulk Data $export instead of paged search")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := bench.FHIR(ctx, bench.FHIROptions{Mappings: *maps, Patients: *patients, Encounters: *encounters, PageSize: *pageSize, Latency: *latency, Bulk: *bulk}, stdout); err != nil {
		fmt.Fprintf(stderr, "ehrbridge bench fhir: %v\n", err)
		return exitFailure
	}
	return exitOK
}
