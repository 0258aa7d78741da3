package ship

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/ship/notify"
)

// poll is --follow: CloudTrail's layout listed every Interval, each
// stream (an account and region's directory) from its checkpoint less the
// look-back, the keys already shipped remembered in --state.
//
// CloudTrail's file names carry the time of delivery, and a failed
// delivery is retried for days, so a file can land behind files already
// shipped: the look-back lists again behind the checkpoint and the state
// tells which of those keys are new.
type poll struct {
	r              *runner
	api            source.S3API
	bucket, prefix string
	st             *state
	start          time.Time
}

func (r *runner) newPoll(ctx context.Context, src string) (*poll, error) {
	if !strings.HasPrefix(src, "s3://") {
		return nil, fmt.Errorf("--follow lists a bucket: give s3://bucket/prefix, not %s", src)
	}
	if r.o.StatePath == "" {
		return nil, fmt.Errorf("--follow needs --state, the file that remembers what was shipped")
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(src, "s3://"), "/")
	if bucket == "" {
		return nil, fmt.Errorf("%s: no bucket", src)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if !strings.Contains("/"+prefix, "/AWSLogs/") {
		prefix += "AWSLogs/"
	}
	if depth := len(layoutParts(prefix)); depth > 4 {
		return nil, fmt.Errorf("%s: --follow lists from the trail's prefix down to at most a region (AWSLogs/ACCOUNT/CloudTrail/REGION/)", src)
	}
	api, err := r.o.S3(ctx)
	if err != nil {
		return nil, err
	}
	st, err := openState(r.o.StatePath)
	if err != nil {
		return nil, err
	}
	def := r.o.Filter.Since
	if def.IsZero() {
		def = time.Now().Add(-r.o.Lookback)
	}
	start, err := st.start(def.UTC())
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--state %s: %v", r.o.StatePath, err)
	}
	r.o.Log.Infof("following s3://%s/%s every %v, from %s for new streams, %v behind each stream's newest file shipped",
		bucket, prefix, r.o.Interval, start.Format(time.RFC3339), r.o.Lookback)
	return &poll{r: r, api: api, bucket: bucket, prefix: prefix, st: st, start: start}, nil
}

// layoutParts are the directories after AWSLogs/, the organization id
// left out.
func layoutParts(prefix string) []string {
	_, after, _ := strings.Cut("/"+prefix, "/AWSLogs/")
	var parts []string
	for i, p := range strings.Split(strings.Trim(after, "/"), "/") {
		if p == "" || i == 0 && strings.HasPrefix(p, "o-") {
			continue
		}
		parts = append(parts, p)
	}
	return parts
}

func (pl *poll) run(ctx context.Context) error {
	defer pl.st.Close()
	for {
		pl.r.c.Polls.Add(1)
		if err := pl.round(ctx); err != nil && ctx.Err() == nil {
			pl.r.p.warn("listing s3://%s/%s: %v; again in %v", pl.bucket, pl.prefix, err, pl.r.o.Interval)
		}
		select {
		case <-time.After(pl.r.o.Interval):
		case <-ctx.Done():
			return nil
		}
	}
}

// round lists every stream once, ships what is new and waits for it.
func (pl *poll) round(ctx context.Context) error {
	streams, err := pl.streams(ctx, pl.prefix)
	if err != nil {
		return err
	}
	// Streams are listed at once, a few at a time; their objects go to
	// the readers as they are found.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, max(2, pl.r.o.Workers))
	for _, s := range streams {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := pl.stream(ctx, s); err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// streams finds the region directories under prefix: AWSLogs/[o-ID/]
// ACCOUNT/CloudTrail/REGION/ (and CloudTrail-Insight/REGION/ with
// --include-insights, CloudTrail-Digest/REGION/ with --include-digests),
// within the account and region filters.
func (pl *poll) streams(ctx context.Context, prefix string) ([]string, error) {
	parts := layoutParts(prefix)
	f := &pl.r.o.Filter
	switch {
	case len(parts) >= 1 && !source.IsAccount(parts[0]):
		return nil, fmt.Errorf("%s: %q is not an account id", prefix, parts[0])
	case len(parts) >= 1 && !f.Account(parts[0]):
		return nil, nil
	case len(parts) >= 2 && !pl.wanted(parts[1]):
		return nil, nil
	case len(parts) == 3:
		if !f.Region(parts[2]) {
			return nil, nil
		}
		return []string{prefix}, nil
	}
	dirs, err := pl.dirs(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		name := strings.TrimSuffix(d[len(prefix):], "/")
		if len(parts) == 0 && strings.HasPrefix(name, "o-") && !strings.Contains(prefix, "/o-") {
			// An organization trail: accounts one level down.
		} else if len(parts) == 0 && !source.IsAccount(name) {
			continue
		}
		sub, err := pl.streams(ctx, d)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

func (pl *poll) wanted(dir string) bool {
	inc := pl.r.o.Include
	return dir == "CloudTrail" || dir == "CloudTrail-Insight" && inc.Insights || dir == "CloudTrail-Digest" && inc.Digests
}

// dirs lists the subdirectories of prefix (a delimiter listing).
func (pl *poll) dirs(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(pl.api, &s3.ListObjectsV2Input{Bucket: aws.String(pl.bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, cp := range page.CommonPrefixes {
			out = append(out, aws.ToString(cp.Prefix))
		}
	}
	return out, nil
}

// stream lists one stream's files from its horizon, the checkpoint less
// the look-back (one flat listing: the date directories sort in time
// order, so StartAfter skips what is older), ships the keys not shipped
// before, and remembers each once its events are all acknowledged.
func (pl *poll) stream(ctx context.Context, prefix string) error {
	checkpoint, shipped, err := pl.st.stream(prefix)
	if err != nil {
		return err
	}
	horizon := pl.start
	if h := checkpoint.Add(-pl.r.o.Lookback); !checkpoint.IsZero() && h.After(horizon) {
		horizon = h
	}
	// A day's directory may hold files stamped just after midnight that
	// belong to the day before: start a day early, filter by stamp.
	after := prefix + horizon.Add(-24*time.Hour).Format("2006/01/02/")
	p := s3.NewListObjectsV2Paginator(pl.api, &s3.ListObjectsV2Input{Bucket: aws.String(pl.bucket), Prefix: aws.String(prefix), StartAfter: aws.String(after)})
	var waits []func()
	// The files handed out are waited for, even when listing stops early
	// (an error, a shutdown): what they shipped is remembered.
	defer func() {
		for _, w := range waits {
			w()
		}
	}()
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			stamp := fileTime(key)
			if stamp.IsZero() || stamp.Before(horizon) || shipped[key] {
				continue
			}
			if why, skip := notify.Kind(key, notify.Options{Digests: true, Insights: true}); skip {
				pl.r.c.skip(string(why), 1)
				continue
			}
			j := pl.r.p.newJob(1)
			if pl.r.p.submit(ctx, pl.r.s3Object(pl.api, j, pl.bucket, key)) != nil {
				return nil // stopping
			}
			waits = append(waits, func() {
				<-j.done
				if j.ok() {
					if err := pl.st.shipped(prefix, key, stamp); err != nil {
						pl.r.o.Log.Errorf("--state: remembering %s: %v (it will be shipped again)", key, err)
					}
				}
			})
		}
	}
	for _, w := range waits {
		w()
	}
	waits = nil
	checkpoint, _, err = pl.st.stream(prefix)
	if err != nil || checkpoint.IsZero() {
		return err
	}
	_, err = pl.st.prune(prefix, maxTime(pl.start, checkpoint.Add(-pl.r.o.Lookback)))
	return err
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fileTime is the time in a CloudTrail file's name: log and Insights
// files end in _YYYYMMDDTHHmmZ_<unique>.json.gz, digest files in
// _YYYYMMDDTHHmmssZ.json.gz.
func fileTime(key string) time.Time {
	fields := strings.Split(path.Base(key), "_")
	for i := len(fields) - 1; i >= 3; i-- {
		f, _, _ := strings.Cut(fields[i], ".")
		for _, layout := range []string{"20060102T1504Z", "20060102T150405Z"} {
			if t, err := time.Parse(layout, f); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}
