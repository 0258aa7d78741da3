package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Object is one file to read.
type Object struct {
	// Name is what error lines and the summary call it: a path, an
	// s3://bucket/key URL, or "-" (standard input).
	Name string
	Size int64 // bytes as stored (compressed); -1 when unknown
	// Live: read as it arrives (standard input), so framed into records
	// from the start rather than looked at first and read again.
	Live bool
	// Remote: fetched over the network (S3), so worth fetching ahead.
	Remote bool
	Place
	open   func(ctx context.Context) (io.ReadCloser, error)
	openAt func(ctx context.Context) (io.ReaderAt, io.Closer, error)
}

// Open streams the object's bytes as stored (compressed or not).
func (o *Object) Open(ctx context.Context) (io.ReadCloser, error) { return o.open(ctx) }

// OpenAt gives random access to the object (for Parquet), or an error
// when it has none (standard input).
func (o *Object) OpenAt(ctx context.Context) (io.ReaderAt, io.Closer, error) {
	if o.openAt == nil {
		return nil, nil, errors.New("no random access to it (Parquet is read from files or S3, not standard input)")
	}
	return o.openAt(ctx)
}

// Parquet reports whether the object is a Parquet file, by its name.
func (o *Object) Parquet() bool {
	return strings.HasSuffix(o.Name, ".parquet")
}

// Lister finds the objects under one of the paths a scan is given.
type Lister interface {
	// List calls emit for each object the filter may take, from one
	// goroutine at a time, in no particular order (the scan sorts them).
	List(ctx context.Context, f *Filter, emit func(Object) error) error
}

// ForPath is the Lister of a command-line path: s3://bucket/prefix, "-"
// or a local file or directory. newS3 makes the S3 client (only when an
// S3 path is given, so a local scan needs no AWS configuration).
func ForPath(p string, s3 func(context.Context) (S3API, error), concurrency int) (Lister, error) {
	switch {
	case strings.HasPrefix(p, "s3://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(p, "s3://"), "/")
		if bucket == "" {
			return nil, fmt.Errorf("%s: no bucket", p)
		}
		return &S3Lister{Bucket: bucket, Prefix: prefix, Client: s3, Concurrency: concurrency}, nil
	case p == "-":
		return stdinLister{}, nil
	}
	return localLister{root: p}, nil
}

type localLister struct{ root string }

// localListers is how many directories a local listing reads at once.
const localListers = 8

func (l localLister) List(ctx context.Context, f *Filter, emit func(Object) error) error {
	info, err := os.Stat(l.root)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return emit(localObject(l.root, info.Size()))
	}
	return walkTree(ctx, l.root, localListers, func(ctx context.Context, dir string, emit func(Object) error) ([]string, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		var subs []string
		for _, d := range entries {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p := filepath.Join(dir, d.Name())
			place := ParsePlace(filepath.ToSlash(p))
			if d.IsDir() {
				if f.Takes(place) && logDir(d.Name()) {
					subs = append(subs, p)
				}
				continue
			}
			if !d.Type().IsRegular() || !f.Takes(place) || strings.HasPrefix(d.Name(), ".") {
				continue
			}
			info, err := d.Info()
			if err != nil {
				return nil, err
			}
			if err := emit(localObject(p, info.Size())); err != nil {
				return nil, err
			}
		}
		return subs, nil
	}, emit)
}

// logDir: CloudTrail's digest files (hashes of the log files, no events)
// sit in a tree of their own; dot directories are nobody's logs.
func logDir(name string) bool {
	return name != "CloudTrail-Digest" && !strings.HasPrefix(name, ".")
}

func localObject(p string, size int64) Object {
	return Object{Name: p, Size: size, Place: ParsePlace(filepath.ToSlash(p)),
		open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) },
		openAt: func(context.Context) (io.ReaderAt, io.Closer, error) {
			f, err := os.Open(p)
			return f, f, err
		}}
}

// stdinLister reads standard input once, as it arrives.
type stdinLister struct{}

func (stdinLister) List(ctx context.Context, f *Filter, emit func(Object) error) error {
	return emit(Object{Name: "-", Size: -1, Live: true, open: func(ctx context.Context) (io.ReadCloser, error) {
		return newCtxReader(ctx, os.Stdin), nil
	}})
}

// ctxReader reads in a goroutine of its own, so a stopped scan is not
// held by a read of a pipe or terminal that waits for its writer (the
// goroutine ends with the process).
type ctxReader struct {
	ctx  context.Context
	data chan chunk
	cur  []byte
	err  error
}

type chunk struct {
	b   []byte
	err error
}

func newCtxReader(ctx context.Context, r io.Reader) *ctxReader {
	c := &ctxReader{ctx: ctx, data: make(chan chunk, 4)}
	go func() {
		defer close(c.data)
		for {
			b := make([]byte, 1<<20)
			n, err := r.Read(b)
			select {
			case c.data <- chunk{b[:n], err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *ctxReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		select {
		case ch, ok := <-c.data:
			if !ok {
				return 0, io.EOF
			}
			c.cur, c.err = ch.b, ch.err
		case <-c.ctx.Done():
			return 0, c.ctx.Err()
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *ctxReader) Close() error { return nil }

// Memory is an object held in memory, named as a path would be (its
// place in a layout is read from the name): a test's file.
func Memory(name string, data []byte) Object {
	return Object{Name: name, Size: int64(len(data)), Place: ParsePlace(name),
		open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		openAt: func(context.Context) (io.ReaderAt, io.Closer, error) {
			return bytes.NewReader(data), io.NopCloser(nil), nil
		}}
}
