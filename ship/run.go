// Package ship is `cloudtrail-quarantine ship`: CloudTrail log files from
// S3 (announced on SQS, or listed with --follow), local paths or standard
// input, sent event by event to Fluent Bit over the forward protocol,
// each message acknowledged before what it came from is let go (an SQS
// message deleted, a listed key remembered): at least once.
package ship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/forward"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/ship/notify"
)

// Options are what the flags say.
type Options struct {
	// Source is sqs://QUEUE_URL, s3://bucket/prefix, a local path or "-".
	Source string
	// Follow lists an s3:// source again every Interval.
	Follow  bool
	Forward forward.Options
	// Connections to Fluent Bit, each with one message awaiting its ack;
	// Workers read objects at once; MaxMessages SQS messages in flight.
	Connections, Workers, MaxMessages int
	// VisibilityTimeout, when set, is asked for on each receive; else the
	// queue's own is read.
	VisibilityTimeout time.Duration
	// WaitTime is the SQS long poll.
	WaitTime time.Duration
	// Interval between listings, Lookback behind each stream's checkpoint
	// (--follow).
	Interval, Lookback time.Duration
	StatePath          string
	Filter             source.Filter
	Include            notify.Options
	S3                 func(context.Context) (source.S3API, error)
	SQS                func(ctx context.Context, queueURL string) (SQSAPI, error)
	// ShutdownTimeout bounds the exit after the context ends.
	ShutdownTimeout time.Duration
	StatsInterval   time.Duration
	Log             *logx.Logger
}

// Result is what a run did.
type Result struct {
	Counters    *counters
	Interrupted bool
}

// listConcurrency is how many S3 list requests a backfill has in flight:
// a bucket's layout is listed an account, region and day at a time.
const listConcurrency = 16

// Failed reports whether anything could not be shipped.
func (r Result) Failed() bool {
	return r.Interrupted || r.Counters.ObjectsFailed.Load() > 0 || r.Counters.MessagesFailed.Load() > 0
}

// runner is one run: the pipeline and the source that feeds it.
type runner struct {
	o *Options
	c *counters
	p *pipeline
	// readCtx ends at shutdown: stop taking work and reading. sendCtx ends
	// ShutdownTimeout less releaseTime later: stop waiting for acks.
	// hardCtx ends at ShutdownTimeout: the last calls (giving messages
	// back) are cut there.
	readCtx, sendCtx, hardCtx context.Context
	producers, finishers      sync.WaitGroup
}

// releaseTime is the part of the shutdown kept for giving unfinished SQS
// messages back.
func releaseTime(t time.Duration) time.Duration { return min(2*time.Second, t/4) }

// Run ships until the source is exhausted (once) or ctx ends (SQS,
// --follow), then for at most ShutdownTimeout more.
func Run(ctx context.Context, o Options, c *counters) (Result, error) {
	p, err := newPipeline(&o, o.Log, c)
	if err != nil {
		return Result{Counters: c}, err
	}
	r := &runner{o: &o, c: c, p: p, readCtx: ctx}
	sendCtx, stopSend := context.WithCancel(context.Background())
	hardCtx, stopHard := context.WithCancel(context.Background())
	defer stopSend()
	defer stopHard()
	r.sendCtx, r.hardCtx = sendCtx, hardCtx
	stopTimers := context.AfterFunc(ctx, func() {
		time.AfterFunc(o.ShutdownTimeout-releaseTime(o.ShutdownTimeout), stopSend)
		time.AfterFunc(o.ShutdownTimeout, stopHard)
	})
	defer stopTimers()

	start, err := r.source(ctx)
	if err != nil {
		return Result{Counters: c}, err
	}
	var srcErr error
	r.producers.Go(func() { srcErr = start() })
	go func() {
		r.producers.Wait()
		close(p.object)
	}()
	p.run(ctx, sendCtx)
	r.finishers.Wait()
	return Result{Counters: c, Interrupted: ctx.Err() != nil}, srcErr
}

// source picks the mode and prepares it (errors here are the user's: a
// queue that cannot be read, a state file in use); the function it
// returns feeds the pipeline.
func (r *runner) source(ctx context.Context) (func() error, error) {
	src := r.o.Source
	switch {
	case strings.HasPrefix(src, "sqs://"):
		q, err := r.newSQS(ctx, strings.TrimPrefix(src, "sqs://"))
		if err != nil {
			return nil, err
		}
		return func() error { return q.receive(ctx) }, nil
	case r.o.Follow:
		pl, err := r.newPoll(ctx, src)
		if err != nil {
			return nil, err
		}
		return func() error { return pl.run(ctx) }, nil
	}
	l, err := source.ForPath(src, r.o.S3, listConcurrency)
	if err != nil {
		return nil, err
	}
	return func() error { return r.once(ctx, l) }, nil
}

// once ships what a path holds, then ends.
func (r *runner) once(ctx context.Context, l source.Lister) error {
	err := l.List(ctx, &r.o.Filter, func(so source.Object) error {
		ob := &object{name: so.Name, open: so.Open}
		if bucket, key, ok := strings.Cut(strings.TrimPrefix(so.Name, "s3://"), "/"); ok && strings.HasPrefix(so.Name, "s3://") {
			ob.bucket, ob.key = bucket, key
		} else {
			ob.key, ob.local = so.Name, true
		}
		if why, skip := notify.Kind(ob.key, r.o.Include); skip {
			r.c.skip(string(why), 1)
			return nil
		}
		ob.job = r.p.newJob(1)
		return r.p.submit(ctx, ob)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", r.o.Source, err)
	}
	return nil
}

// submit hands an object to the readers, waiting while they are busy; at
// shutdown the object's job fails instead.
func (p *pipeline) submit(ctx context.Context, ob *object) error {
	select {
	case p.object <- ob:
		return nil
	case <-ctx.Done():
		ob.job.failed.Store(true)
		ob.job.release(1)
		return ctx.Err()
	}
}

// s3Object is an object to GET.
func (r *runner) s3Object(api source.S3API, j *job, bucket, key string) *object {
	return &object{job: j, name: "s3://" + bucket + "/" + key, bucket: bucket, key: key,
		open: func(ctx context.Context) (io.ReadCloser, error) {
			out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				return nil, err
			}
			return out.Body, nil
		}}
}

// statsLoop logs the stats line every interval until ctx ends.
func statsLoop(ctx context.Context, every time.Duration, line func() string, log *logx.Logger) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			log.Infof("%s", line())
		case <-ctx.Done():
			return
		}
	}
}
