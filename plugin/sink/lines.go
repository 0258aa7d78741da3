package sink

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// Lines writes each alert as one JSON line: to stdout, or appended to a file.
type Lines struct {
	mu   sync.Mutex
	open func() (io.WriteCloser, error)
	sync bool
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Stdout writes alerts to the process's standard output (Fluent Bit's).
func Stdout() *Lines {
	return &Lines{open: func() (io.WriteCloser, error) { return nopCloser{os.Stdout}, nil }}
}

// File appends alerts to path. The file is opened for each batch, so
// logrotate can move it away, and synced before Deliver returns, so an
// alert reported delivered survives a crash.
func File(path string) (*Lines, error) {
	open := func() (io.WriteCloser, error) {
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	f.Close()
	return &Lines{open: open, sync: true}, nil
}

// Encoding is JSON: one object per line.
func (l *Lines) Encoding() Encoding { return JSON }

// Batches is one batch: a local write has no size limit to respect.
func (l *Lines) Batches(alerts []Alert) [][]Alert {
	if len(alerts) == 0 {
		return nil
	}
	return [][]Alert{alerts}
}

// Fits: a local write has no size limit.
func (l *Lines) Fits(Alert) bool { return true }

// Deliver writes the whole batch with one write, so concurrent writers
// (other instances, Fluent Bit's own stdout output) cannot split a line.
// A local write has no receiver to wait for: ctx is not consulted.
func (l *Lines) Deliver(_ context.Context, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	size := 0
	for _, a := range alerts {
		size += len(a.Doc) + 1
	}
	buf := make([]byte, 0, size)
	for _, a := range alerts {
		buf = append(append(buf, a.Doc...), '\n')
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w, err := l.open()
	if err != nil {
		return err
	}
	if _, err = w.Write(buf); err == nil && l.sync {
		if f, ok := w.(*os.File); ok {
			err = f.Sync()
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing alerts: %w", err)
	}
	return nil
}

// Close has nothing to release: files are opened per batch.
func (l *Lines) Close() error { return nil }
