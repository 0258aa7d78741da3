package ship

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/cliflag"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/tlsfiles"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Exit statuses, as the scan's.
const (
	ExitOK     = 0
	ExitFailed = 2
)

const usage = `Usage: cloudtrail-quarantine ship [flags] SOURCE

Sends every event of CloudTrail log files to Fluent Bit over the forward
protocol (one record per event, with the file's s3_bucket and s3_key, or
source_file), waiting for Fluent Bit's acknowledgement of each message:
at least once.

SOURCE is one of:
  sqs://QUEUE_URL        receive S3, SNS, CloudTrail or EventBridge notifications
                         of new log files; delete each message once every event of
                         its objects was acknowledged (runs until stopped)
  s3://bucket/prefix     with --follow: list CloudTrail's layout every --interval,
                         remembering what was shipped in --state (runs until stopped);
                         without: ship what is there once, then exit
  PATH | -               local files or directories, or standard input, once

Examples:
  cloudtrail-quarantine ship --forward unix:///var/run/fluent-bit/ct.sock \
      sqs://https://sqs.us-east-1.amazonaws.com/111122223333/cloudtrail-files
  cloudtrail-quarantine ship --follow --state /var/lib/ctq-ship/state.db s3://my-trail/AWSLogs/
  cloudtrail-quarantine ship --forward tcp://fluent-bit:24224 --since 2025-01-01 s3://my-trail/AWSLogs/
  zcat file.json.gz | cloudtrail-quarantine ship -

Flags:
`

const exitUsage = `
Exit status: 0, or 2 on a bad flag, a source that cannot be read, or (shipping
once) an object that could not be shipped whole or a stop before the end.
`

type settings struct {
	forward, tag, endpoint, sqsEndpoint, state, since, metrics, sharedKeyFile, selfHostname string
	tlsOn, tlsVerify                                                                        bool
	tlsCA, tlsCrt, tlsKey, tlsServerName                                                    string
	accounts, regions                                                                       cliflag.List
	o                                                                                       Options
}

func flags(stderr io.Writer) (*flag.FlagSet, *settings) {
	s := &settings{}
	o := &s.o
	fs := flag.NewFlagSet("ship", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.forward, "forward", "unix:///var/run/fluent-bit/ct.sock", "Fluent Bit's forward input: unix://`PATH` or tcp://HOST:PORT")
	fs.StringVar(&s.tag, "tag", "aws.cloudtrail.events", "the records' `tag`")
	fs.DurationVar(&o.Forward.Timeout, "ack-timeout", 30*time.Second, "how long one message may wait for its acknowledgement (then it is sent again)")
	fs.IntVar(&o.Forward.MaxBatchBytes, "batch-size", 1<<20, "most `bytes` in one forward message (under in_forward's buffer_max_size)")
	fs.IntVar(&o.Connections, "connections", 2, "connections to Fluent Bit, each with one message awaiting its acknowledgement")
	fs.IntVar(&o.Workers, "workers", 4, "objects read at once")
	fs.IntVar(&o.MaxMessages, "max-messages", 20, "SQS messages in flight at most")
	fs.DurationVar(&o.VisibilityTimeout, "visibility-timeout", 0, "SQS visibility timeout to ask for on each receive (default: the queue's)")
	fs.DurationVar(&o.WaitTime, "wait", 20*time.Second, "SQS long poll (at most 20s)")
	fs.BoolVar(&o.Follow, "follow", false, "s3://: list the bucket every --interval until stopped")
	fs.DurationVar(&o.Interval, "interval", time.Minute, "--follow: time between listings")
	fs.DurationVar(&o.Lookback, "lookback", 72*time.Hour, "--follow: how far behind each stream's newest file shipped to list again, for files delivered late")
	fs.StringVar(&s.state, "state", "", "--follow: the `file` (bbolt) that remembers the keys shipped")
	fs.StringVar(&s.since, "since", "", "s3:// and paths: only files from this `time` on (RFC 3339 or YYYY-MM-DD); --follow: where a first run starts (default: --lookback ago)")
	fs.Var(&s.accounts, "account", "s3:// and paths: only these accounts (`ids`, comma-separated or repeated)")
	fs.Var(&s.regions, "region", "s3:// and paths: only these CloudTrail `regions`")
	fs.BoolVar(&o.Include.Digests, "include-digests", false, "also ship CloudTrail-Digest files (one record each: they hold no events)")
	fs.BoolVar(&o.Include.Insights, "include-insights", false, "also ship CloudTrail-Insight files")
	fs.StringVar(&s.endpoint, "endpoint-url", "", "S3 endpoint `URL`, for an S3-compatible store (path-style requests)")
	fs.StringVar(&s.sqsEndpoint, "sqs-endpoint-url", "", "SQS endpoint `URL` (default: the queue URL's host when it is not AWS's, else AWS's for the region)")
	fs.BoolVar(&s.tlsOn, "tls", false, "speak TLS to Fluent Bit (tcp://)")
	fs.BoolVar(&s.tlsVerify, "tls-verify", true, "verify Fluent Bit's certificate")
	fs.StringVar(&s.tlsCA, "tls-ca-file", "", "PEM CA `file` to verify Fluent Bit's certificate with")
	fs.StringVar(&s.tlsCrt, "tls-crt-file", "", "PEM client certificate `file` (with --tls-key-file)")
	fs.StringVar(&s.tlsKey, "tls-key-file", "", "PEM client key `file`")
	fs.StringVar(&s.tlsServerName, "tls-server-name", "", "the `name` Fluent Bit's certificate must carry (default: the host of --forward)")
	fs.StringVar(&s.sharedKeyFile, "shared-key-file", "", "`file` holding in_forward's shared_key (or set CTQ_SHARED_KEY); never logged")
	fs.StringVar(&s.selfHostname, "self-hostname", "", "hostname sent in the shared-key handshake (default: this host's)")
	fs.StringVar(&s.metrics, "metrics-listen", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:2021)")
	fs.DurationVar(&o.StatsInterval, "stats-interval", time.Minute, "log the stats line this often (0: only at exit)")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "after SIGTERM, exit within this")
	return fs, s
}

// Main runs `cloudtrail-quarantine ship` with args (after "ship").
func Main(args []string, stdout, stderr io.Writer) int {
	fs, s := flags(stderr)
	help := false
	for _, a := range args {
		if a == "--" {
			break
		}
		help = help || a == "-h" || a == "-help" || a == "--help"
	}
	fs.Usage = func() {
		if !help {
			fmt.Fprintln(fs.Output(), "Run 'cloudtrail-quarantine ship --help' for the flags.")
			return
		}
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usage)
		fs.PrintDefaults()
		fmt.Fprint(stdout, exitUsage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitFailed
	}
	log := logx.NewCommand(stderr, "ship")
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cloudtrail-quarantine ship: "+format+"\n", a...)
		return ExitFailed
	}
	if fs.NArg() != 1 {
		return bad("give one SOURCE (sqs://QUEUE_URL, s3://bucket/prefix, a path or -); see --help")
	}
	o, err := s.options(fs.Arg(0), log)
	if err != nil {
		return bad("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
		// The bound the README promises, whatever is still running.
		time.Sleep(o.ShutdownTimeout)
		log.Errorf("still running %v after the signal: exiting", o.ShutdownTimeout)
		os.Exit(ExitFailed)
	}()

	c := &counters{}
	if s.metrics != "" {
		reg := prometheus.NewRegistry()
		c.register(reg)
		ln, err := net.Listen("tcp", s.metrics)
		if err != nil {
			return bad("--metrics-listen %s: %v", s.metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Infof("metrics at http://%s/metrics", ln.Addr())
	}
	sqsMode := strings.HasPrefix(o.Source, "sqs://")
	statsCtx, stopStats := context.WithCancel(ctx)
	go statsLoop(statsCtx, o.StatsInterval, func() string { return c.line(time.Now(), sqsMode) }, log)
	log.Infof("shipping %s to %s %s, tag %s: %d workers, %d connections, messages of at most %d bytes, ack timeout %v",
		o.Source, o.Forward.Network, o.Forward.Address, o.Forward.Tag, o.Workers, o.Connections, o.Forward.MaxBatchBytes, o.Forward.Timeout)
	res, err := Run(ctx, o, c)
	stopStats()
	log.Infof("exit: %s", c.line(time.Now(), sqsMode))
	if err != nil {
		log.Errorf("%v", err)
		return ExitFailed
	}
	once := !sqsMode && !o.Follow
	if res.Counters.ObjectsFailed.Load() > 0 && once || res.Interrupted && once {
		return ExitFailed
	}
	return ExitOK
}

// options checks the flags.
func (s *settings) options(src string, log *logx.Logger) (Options, error) {
	o := s.o
	o.Source, o.Log, o.StatePath = src, log, s.state
	sqsMode := strings.HasPrefix(src, "sqs://")
	switch {
	case o.Workers < 1:
		return o, fmt.Errorf("--workers %d: at least 1", o.Workers)
	case o.Connections < 1:
		return o, fmt.Errorf("--connections %d: at least 1", o.Connections)
	case o.MaxMessages < 1:
		return o, fmt.Errorf("--max-messages %d: at least 1", o.MaxMessages)
	case o.WaitTime < 0 || o.WaitTime > 20*time.Second:
		return o, fmt.Errorf("--wait %v: 0 to 20s", o.WaitTime)
	case o.ShutdownTimeout < time.Second:
		return o, fmt.Errorf("--shutdown-timeout %v: at least 1s", o.ShutdownTimeout)
	case o.Follow && (sqsMode || !strings.HasPrefix(src, "s3://")):
		return o, fmt.Errorf("--follow lists a bucket: give s3://bucket/prefix")
	case o.Follow && s.state == "":
		return o, fmt.Errorf("--follow needs --state, the file that remembers what was shipped")
	case o.Follow && o.Interval < time.Second:
		return o, fmt.Errorf("--interval %v: at least 1s", o.Interval)
	case o.Follow && o.Lookback < time.Hour:
		return o, fmt.Errorf("--lookback %v: at least 1h (CloudTrail delivers files minutes to days late)", o.Lookback)
	case sqsMode && (len(s.accounts) > 0 || len(s.regions) > 0 || s.since != ""):
		return o, fmt.Errorf("--account, --region and --since select what is listed: with sqs://, shard with one queue per shard (an S3 notification per account prefix) instead")
	}
	if sqsMode {
		if _, err := QueueURL(strings.TrimPrefix(src, "sqs://")); err != nil {
			return o, err
		}
	}
	if s.since != "" {
		t, err := cliflag.ParseTime(s.since, false)
		if err != nil {
			return o, fmt.Errorf("--since: %v", err)
		}
		o.Filter.Since = t
	}
	if err := cliflag.Prune(&o.Filter, s.accounts, s.regions); err != nil {
		return o, err
	}
	network, addr, err := forwardAddress(s.forward)
	if err != nil {
		return o, err
	}
	o.Forward.Network, o.Forward.Address, o.Forward.Tag = network, addr, s.tag
	if o.Forward.Timeout <= 0 {
		return o, fmt.Errorf("--ack-timeout %v: positive", o.Forward.Timeout)
	}
	key := os.Getenv("CTQ_SHARED_KEY")
	if s.sharedKeyFile != "" {
		b, err := os.ReadFile(s.sharedKeyFile)
		if err != nil {
			return o, fmt.Errorf("--shared-key-file: %v", err)
		}
		key = strings.TrimSpace(string(b))
	}
	o.Forward.SharedKey = key
	log.Redact([]string{key})
	o.Forward.SelfHostname = s.selfHostname
	if o.Forward.SelfHostname == "" {
		o.Forward.SelfHostname, _ = os.Hostname()
	}
	if s.tlsOn {
		if network != "tcp" {
			return o, fmt.Errorf("--tls: only with tcp:// (a unix socket is local)")
		}
		host, _, _ := net.SplitHostPort(addr)
		if s.tlsServerName != "" {
			host = s.tlsServerName
		}
		if (s.tlsCrt == "") != (s.tlsKey == "") {
			return o, fmt.Errorf("--tls-crt-file: needs --tls-key-file, and the other way round")
		}
		o.Forward.TLS, err = tlsfiles.Files{ServerName: host, CA: s.tlsCA, Crt: s.tlsCrt, Key: s.tlsKey, Verify: s.tlsVerify,
			CAName: "--tls-ca-file", CrtName: "--tls-crt-file"}.Config()
		if err != nil {
			return o, err
		}
	}
	endpoint, sqsEndpoint := s.endpoint, s.sqsEndpoint
	o.S3 = func(ctx context.Context) (source.S3API, error) { return newS3(ctx, endpoint) }
	o.SQS = func(ctx context.Context, queueURL string) (SQSAPI, error) { return newSQS(ctx, queueURL, sqsEndpoint) }
	return o, nil
}

// forwardAddress reads unix:///path or tcp://host:port.
func forwardAddress(v string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(v, "unix://"):
		if p := strings.TrimPrefix(v, "unix://"); p != "" {
			return "unix", p, nil
		}
	case strings.HasPrefix(v, "tcp://"):
		hp := strings.TrimPrefix(v, "tcp://")
		if _, port, err := net.SplitHostPort(hp); err == nil && port != "" {
			return "tcp", hp, nil
		}
	}
	return "", "", fmt.Errorf("--forward %q: unix:///path/to/socket or tcp://host:port", v)
}

// awsConfig is the SDK's standard chain (environment, shared files, SSO,
// web identity, container and instance roles); region, when none is
// configured, is the one given or us-east-1 (only needed to sign).
func awsConfig(ctx context.Context, region string) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return cfg, fmt.Errorf("AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		cfg.Region = region
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return cfg, nil
}

func newS3(ctx context.Context, endpoint string) (source.S3API, error) {
	cfg, err := awsConfig(ctx, "")
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		// S3-compatible stores often send no checksum; the SDK would log
		// a line per object saying so.
		o.DisableLogOutputChecksumValidationSkipped = true
		if endpoint != "" {
			o.BaseEndpoint = &endpoint
			o.UsePathStyle = true
		}
	}), nil
}

// newSQS: the queue URL names the region (sqs.REGION.amazonaws.com) and,
// for an SQS-compatible server, the endpoint.
func newSQS(ctx context.Context, queueURL, endpoint string) (SQSAPI, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return nil, err
	}
	region := ""
	host := u.Hostname()
	if parts := strings.Split(host, "."); len(parts) >= 4 && parts[0] == "sqs" {
		region = parts[1]
	}
	aws := strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn")
	if endpoint == "" && !aws {
		endpoint = u.Scheme + "://" + u.Host
	}
	cfg, err := awsConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if endpoint != "" {
			o.BaseEndpoint = &endpoint
		}
	}), nil
}
