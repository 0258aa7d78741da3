// Package cli is the cloudtrail-quarantine command: its flags, its
// output (alerts on stdout or a file, a summary and a progress bar on
// stderr) and its exit status. The scanning is package scan's.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/cliflag"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Exit statuses.
const (
	Clean  = 0 // nothing found
	Found  = 1 // alerts found
	Failed = 2 // a bad flag, a file that could not be read, or stopped: the scan is incomplete
)

const name = "cloudtrail-quarantine"

// Main runs the command with args (without the program name) and returns
// the exit status.
func Main(args []string, stdout, stderr *os.File) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderrOr(stderr, len(args) == 0), topUsage)
		if len(args) == 0 {
			return Failed
		}
		return Clean
	}
	if args[0] != "scan" {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", name, args[0], topUsage)
		return Failed
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second Ctrl-C kills, as usual.
		<-ctx.Done()
		stop()
	}()
	return Scan(ctx, args[1:], stdout, stderr)
}

func stderrOr(stderr *os.File, isErr bool) io.Writer {
	if isErr {
		return stderr
	}
	return os.Stdout
}

const topUsage = `Usage: cloudtrail-quarantine <command> [flags]

Commands:
  scan    scan CloudTrail archives (files, directories, S3, Security Lake) with the plugin's rules

Run "cloudtrail-quarantine scan --help" for its flags.
`

const scanUsage = `Usage: cloudtrail-quarantine scan [flags] PATH...

Scans CloudTrail archives with the rules of the cloudtrail_quarantine Fluent Bit
plugin: AWS quarantining an exposed access key, a failed or removed quarantine,
calls denied by it, AWS Health exposure notices, and the key's life after them
(its use, an exposure never quarantined, its retirement).

PATH is a CloudTrail log file (.json.gz or .json, {"Records": [...]}), JSON lines
of events, EventBridge or AWS Health events, a Security Lake Parquet file, a
directory (walked, CloudTrail's AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
layout pruned by --account, --region, --since, --until and --shard),
s3://bucket/prefix (the same, listed and read from S3), or - (standard input).
Flags may come before or after the paths; -- ends the flags.

--region keeps us-east-1's IAM, STS (global endpoint) and AWS Health events
whatever the regions given: CloudTrail logs the global services there, and a
key's quarantine and exposure notice are among them. Of us-east-1's files, when
it is not one of the regions given, only those events are kept.

Examples:
  cloudtrail-quarantine scan ./AWSLogs
  cloudtrail-quarantine scan --since 2025-01-01 --account 111122223333 s3://my-trail/AWSLogs/
  cloudtrail-quarantine scan --format ecs --output alerts.ndjson s3://aws-security-data-lake-us-east-1-x/aws/CLOUD_TRAIL_MGMT/
  zcat exported.json.gz | cloudtrail-quarantine scan -
  cloudtrail-quarantine scan --state /var/lib/fluent-bit/ctq s3://my-trail/AWSLogs/
  cloudtrail-quarantine scan --shard 2/8 s3://my-trail/AWSLogs/
  cloudtrail-quarantine scan --shard 8 s3://my-trail/AWSLogs/   # K from JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX

Flags:
`

const exitUsage = `
Output: one alert a line (the plugin's alert schema; --format ecs or ocsf for
those schemas), or a table when stdout is a terminal. A summary goes to stderr.

Exit status: 0 nothing found, 1 alerts found, 2 the scan is incomplete (a file
could not be read, a bad flag, or it was stopped), whether alerts were found or not.
`

// settings are the flags.
type settings struct {
	format, output, since, until, shard, state, endpoint, progress string
	runbookBase                                                    string
	accounts, regions, eventKeys                                   cliflag.List
	workers, maxKeys, s3Concurrency                                int
	includeEvent                                                   bool
	grace, delay, window, ttl                                      time.Duration
}

// flags are the scan's flags, read wherever they stand among the paths
// (a responder types the path first half the time).
func flags() (*pflag.FlagSet, *settings) {
	s := &settings{eventKeys: cliflag.List{"log", "message"}}
	fs := pflag.NewFlagSet("scan", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.StringVar(&s.format, "format", "", "alert format: native, ecs, ocsf, or table (default: table on a terminal, else native)")
	fs.StringVar(&s.output, "output", "", "write alerts to this `file` instead of stdout")
	fs.StringVar(&s.since, "since", "", "only events at or after this `time` (RFC 3339, or YYYY-MM-DD)")
	fs.StringVar(&s.until, "until", "", "only events at or before this `time` (RFC 3339, or YYYY-MM-DD: the end of that day)")
	fs.Var(&s.accounts, "account", "only these accounts (`ids`, comma-separated or repeated)")
	fs.Var(&s.regions, "region", "only these CloudTrail `regions` (comma-separated or repeated); us-east-1's IAM, STS and Health events are kept for the lifecycle")
	fs.StringVar(&s.shard, "shard", "", "scan shard `K/N` of the accounts (or N, with K from JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX)")
	fs.StringVar(&s.state, "state", "", "write the lifecycle's watch list into the plugin's store: its State_Dir `path` (or that dir's state.db)")
	fs.StringVar(&s.endpoint, "endpoint-url", "", "S3 endpoint `URL`, for an S3-compatible store (path-style requests)")
	fs.IntVar(&s.workers, "workers", runtime.GOMAXPROCS(0), "files decoded at once")
	fs.IntVar(&s.s3Concurrency, "s3-concurrency", scan.DefaultS3Concurrency, "S3 requests (listings and GETs) in flight at once")
	fs.BoolVar(&s.includeEvent, "include-event", true, "copy the original event into each alert")
	fs.StringVar(&s.runbookBase, "runbook-base-url", alert.DefaultRunbookBase, "the page holding the runbooks, so rule.runbook is a link (the plugin's Runbook_Base_URL)")
	fs.Var(&s.eventKeys, "event-key", "record `keys` that may hold an event as a JSON string")
	fs.StringVar(&s.progress, "progress", "auto", "progress bar on stderr: auto (on a terminal), always, never")
	fs.DurationVar(&s.grace, "grace", 15*time.Minute, "how long after an exposure a quarantine may come (the plugin's Quarantine_Grace)")
	fs.DurationVar(&s.delay, "delay", 15*time.Minute, "how late an event may be (the plugin's Event_Delay): events are put in time order within it")
	fs.DurationVar(&s.window, "use-window", time.Hour, "one use alert per key, service, action and outcome per window (Use_Alert_Window)")
	fs.DurationVar(&s.ttl, "watch-ttl", 30*24*time.Hour, "how long a key stays watched after it was last seen, in event time (Watch_TTL)")
	fs.IntVar(&s.maxKeys, "watch-max-keys", 100000, "most keys watched per account (Watch_Max_Keys)")
	return fs, s
}

// Scan runs `cloudtrail-quarantine scan`.
func Scan(ctx context.Context, args []string, stdout, stderr *os.File) int {
	fs, s := flags()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, scanUsage)
			fmt.Fprint(stdout, fs.FlagUsages())
			fmt.Fprint(stdout, exitUsage)
			return Clean
		}
		fmt.Fprintf(stderr, "%s scan: %v\nRun '%s scan --help' for the flags.\n", name, err, name)
		return Failed
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: "+format+"\n", append([]any{name}, a...)...)
		return Failed
	}
	if fs.NArg() == 0 {
		return bad("scan: no PATH given (a file, a directory, s3://bucket/prefix or -); see --help")
	}
	o, err := s.options(fs.Args())
	if err != nil {
		return bad("%v", err)
	}
	format, err := s.outputFormat(stdout)
	if err != nil {
		return bad("%v", err)
	}
	out := io.Writer(stdout)
	if s.output != "" {
		f, err := os.Create(s.output)
		if err != nil {
			return bad("--output: %v", err)
		}
		defer f.Close()
		out = f
	}
	errs := newConsole(stderr)
	o.FileError = func(name string, err error) { errs.line("%s: error: %s: %v", cmdName, name, err) }
	showBar := s.progress == "always" || (s.progress == "auto" && term.IsTerminal(int(stderr.Fd())))
	if showBar {
		o.Progress = &scan.Progress{}
		stopBar := errs.bar(o.Progress)
		defer stopBar()
	}
	res, err := scan.Run(ctx, o)
	if err == nil && !res.Summary.Interrupted {
		errs.finished()
	}
	errs.done()
	if err != nil {
		return bad("%v", err)
	}
	if err := writeAlerts(out, res.Findings, format, s.includeEvent, s.runbookBase); err != nil {
		errs.line("%s: error: writing alerts: %v", cmdName, err)
		res.Summary.Failed++
	}
	stateErr := false
	if s.state != "" {
		dir, _ := stateDir(s.state)
		n, err := scan.SaveState(dir, res.Cases, res.Watermark)
		if err != nil {
			errs.line("%s: error: --state: %v", cmdName, err)
			stateErr = true
		} else {
			res.Summary.StateWritten = n
		}
	}
	printSummary(stderr, &res.Summary, s.state, o.Workers)
	switch {
	case res.Summary.Failed > 0 || res.Summary.Interrupted || stateErr:
		return Failed
	case len(res.Findings) > 0:
		return Found
	}
	return Clean
}

const cmdName = name

// options turns the flags into the scan's options.
func (s *settings) options(paths []string) (scan.Options, error) {
	o := scan.Options{Paths: paths, Workers: s.workers, EventKeys: s.eventKeys, S3Concurrency: s.s3Concurrency}
	if s.workers < 1 {
		return o, fmt.Errorf("--workers %d: at least 1", s.workers)
	}
	if s.s3Concurrency < 1 {
		return o, fmt.Errorf("--s3-concurrency %d: at least 1", s.s3Concurrency)
	}
	var err error
	if o.Filter.Since, err = cliflag.ParseTime(s.since, false); err != nil {
		return o, fmt.Errorf("--since: %v", err)
	}
	if o.Filter.Until, err = cliflag.ParseTime(s.until, true); err != nil {
		return o, fmt.Errorf("--until: %v", err)
	}
	if !o.Filter.Since.IsZero() && !o.Filter.Until.IsZero() && o.Filter.Until.Before(o.Filter.Since) {
		return o, fmt.Errorf("--until %s is before --since %s", s.until, s.since)
	}
	if err := cliflag.Prune(&o.Filter, s.accounts, s.regions); err != nil {
		return o, err
	}
	if o.Filter.Shard, err = parseShard(s.shard, os.Getenv); err != nil {
		return o, fmt.Errorf("--shard: %v", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--grace", s.grace}, {"--delay", s.delay}, {"--use-window", s.window}, {"--watch-ttl", s.ttl}} {
		if d.v < 0 {
			return o, fmt.Errorf("%s %v: not negative", d.name, d.v)
		}
	}
	if err := alert.CheckRunbookBase(s.runbookBase); err != nil {
		return o, fmt.Errorf("--runbook-base-url: %v", err)
	}
	if s.maxKeys < 1 {
		return o, fmt.Errorf("--watch-max-keys %d: at least 1", s.maxKeys)
	}
	o.Lifecycle = lifecycle.Options{WatchTTL: s.ttl, MaxKeys: s.maxKeys, UseWindow: s.window, Grace: s.grace, Delay: s.delay,
		Persist: s.state != ""}
	if s.state != "" {
		if _, err := stateDir(s.state); err != nil {
			return o, fmt.Errorf("--state: %v", err)
		}
	}
	endpoint, conc := s.endpoint, s.s3Concurrency
	o.S3 = func(ctx context.Context) (source.S3API, error) { return NewS3(ctx, endpoint, conc) }
	return o, nil
}

func (s *settings) outputFormat(stdout *os.File) (string, error) {
	f := s.format
	if f == "" {
		f = "native"
		if s.output == "" && term.IsTerminal(int(stdout.Fd())) {
			f = "table"
		}
	}
	if _, ok := formats[f]; !ok && f != "table" {
		return "", fmt.Errorf("--format %q: native, ecs, ocsf or table", s.format)
	}
	return f, nil
}

// parseShard reads K/N, or N with K from the job engine that runs the
// scan: a Kubernetes Indexed Job, an AWS Batch array job.
func parseShard(v string, env func(string) string) (source.Shard, error) {
	if v == "" {
		return source.Shard{}, nil
	}
	ks, ns, explicit := strings.Cut(v, "/")
	if !explicit {
		ns = ks
		for _, name := range []string{"JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"} {
			if ks = env(name); ks != "" {
				break
			}
		}
		if ks == "" {
			return source.Shard{}, fmt.Errorf("%q gives N alone, and neither JOB_COMPLETION_INDEX nor AWS_BATCH_JOB_ARRAY_INDEX is set: give K/N", v)
		}
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return source.Shard{}, fmt.Errorf("%q: N must be a whole number, at least 1", v)
	}
	k, err := strconv.Atoi(ks)
	if err != nil || k < 0 || k >= n {
		return source.Shard{}, fmt.Errorf("%q: K is %q, which must be 0 to %d", v, ks, n-1)
	}
	return source.Shard{K: k, N: n}, nil
}

// NewS3 is an S3 client from the standard chain (environment, shared
// config and credentials files, SSO, web identity, container and
// instance roles); a region is only needed to sign, so us-east-1 stands
// in when none is configured.
func NewS3(ctx context.Context, endpoint string, concurrency int) (source.S3API, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		// The SDK logs a line for each GET whose response carries no
		// checksum it can validate (S3-compatible stores, ranged reads):
		// thousands of lines over the progress bar. gzip's CRC and the
		// JSON framing check what the scan reads.
		o.DisableLogOutputChecksumValidationSkipped = true
		// Enough connections for --s3-concurrency requests at once.
		o.HTTPClient = httpClient(concurrency)
		if endpoint != "" {
			o.BaseEndpoint = &endpoint
			o.UsePathStyle = true
		}
	}), nil
}

// httpClient keeps a connection open for each request in flight (the
// SDK's default keeps 10 idle per host, so most of 64 concurrent GETs
// would open a new connection, TLS and all).
func httpClient(concurrency int) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = max(t.MaxIdleConns, 2*concurrency)
		t.MaxIdleConnsPerHost = 2 * concurrency
	})
}
