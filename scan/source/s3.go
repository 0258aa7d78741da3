package source

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3API is the part of the S3 client a scan uses.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// S3Lister lists s3://Bucket/Prefix. Inside a layout it lists one level
// at a time (a delimiter "/" listing), so whole accounts, regions and
// dates the filter does not take are never listed; below a day it lists
// flat. The prefixes of a level (accounts, regions, years, months, days)
// are listed concurrently, Concurrency requests at once: the listing of
// a trail is thousands of requests, each a round trip.
type S3Lister struct {
	Bucket, Prefix string
	Client         func(context.Context) (S3API, error)
	Concurrency    int

	once   sync.Once
	client S3API
	err    error
}

func (l *S3Lister) api(ctx context.Context) (S3API, error) {
	l.once.Do(func() { l.client, l.err = l.Client(ctx) })
	return l.client, l.err
}

// List calls emit from one goroutine at a time, in no particular order.
func (l *S3Lister) List(ctx context.Context, f *Filter, emit func(Object) error) error {
	c, err := l.api(ctx)
	if err != nil {
		return err
	}
	return walkTree(ctx, l.Prefix, l.Concurrency, func(ctx context.Context, prefix string, emit func(Object) error) ([]string, error) {
		return l.level(ctx, c, prefix, f, emit)
	}, emit)
}

// level lists one prefix: its objects go to emit, its sub-prefixes the
// filter takes are returned.
func (l *S3Lister) level(ctx context.Context, c S3API, prefix string, f *Filter, emit func(Object) error) ([]string, error) {
	place := ParsePlace(prefix)
	if !f.Takes(place) {
		return nil, nil
	}
	// A day (or a Security Lake partition) holds files only: list flat.
	flat := place.Layout() && !place.Time.IsZero() && place.Span <= 24*time.Hour
	in := &s3.ListObjectsV2Input{Bucket: aws.String(l.Bucket), Prefix: aws.String(prefix)}
	if !flat {
		in.Delimiter = aws.String("/")
	}
	var subs []string
	p := s3.NewListObjectsV2Paginator(c, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", l.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			pl := ParsePlace(key)
			if !f.Takes(pl) || (len(key) > 0 && key[len(key)-1] == '/') {
				continue
			}
			if err := emit(l.object(c, key, aws.ToInt64(o.Size), pl)); err != nil {
				return nil, err
			}
		}
		for _, cp := range page.CommonPrefixes {
			if sub := aws.ToString(cp.Prefix); logDir(lastDir(sub)) && f.Takes(ParsePlace(sub)) {
				subs = append(subs, sub)
			}
		}
	}
	return subs, nil
}

func lastDir(prefix string) string {
	if n := len(prefix); n > 0 && prefix[n-1] == '/' {
		prefix = prefix[:n-1]
	}
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] == '/' {
			return prefix[i+1:]
		}
	}
	return prefix
}

func (l *S3Lister) object(c S3API, key string, size int64, pl Place) Object {
	name := "s3://" + l.Bucket + "/" + key
	return Object{Name: name, Size: size, Place: pl, Remote: true,
		open: func(ctx context.Context) (io.ReadCloser, error) {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(key)})
			if err != nil {
				return nil, err
			}
			return out.Body, nil
		},
		openAt: func(ctx context.Context) (io.ReaderAt, io.Closer, error) {
			return &rangeReader{ctx: ctx, c: c, bucket: l.Bucket, key: key, size: size}, io.NopCloser(nil), nil
		}}
}

// rangeReader reads an object by ranged GETs of at least rangeMin bytes,
// keeping the last one: Parquet's reader asks for the footer, then for
// column chunks, in many small reads.
type rangeReader struct {
	ctx         context.Context
	c           S3API
	bucket, key string
	size        int64

	mu   sync.Mutex
	off  int64
	data []byte
}

const rangeMin = 1 << 20

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) && off < r.size {
		if off < r.off || off >= r.off+int64(len(r.data)) {
			if err := r.fetch(off, int64(len(p)-n)); err != nil {
				return n, err
			}
		}
		c := copy(p[n:], r.data[off-r.off:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *rangeReader) fetch(off, want int64) error {
	end := min(r.size, off+max(want, rangeMin)) - 1
	out, err := r.c.GetObject(r.ctx, &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(r.key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return err
	}
	if int64(len(data)) != end-off+1 {
		return fmt.Errorf("ranged read of s3://%s/%s at %d: %d bytes, want %d", r.bucket, r.key, off, len(data), end-off+1)
	}
	r.off, r.data = off, data
	return nil
}
