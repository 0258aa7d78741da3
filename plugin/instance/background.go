package instance

import (
	"context"
	"runtime/debug"
	"time"
)

// goSafe runs loop on its own goroutine until the instance closes (loop
// returns once in.stop is closed; ctx is for its deliveries). A panic
// in it is a bug, and must not take Fluent Bit down: it is logged in one
// line naming the goroutine, counted, and the loop starts again after a
// backoff.
func (in *Instance) goSafe(name string, loop func(ctx context.Context)) {
	in.background.Add(1)
	go func() {
		defer in.background.Done()
		for failures := 1; ; failures++ {
			if !in.runRecovered(name, loop) {
				return // loop returned: the instance is closing
			}
			select {
			case <-in.stop:
				return
			case <-time.After(backoff(failures)):
			}
		}
	}()
}

// runRecovered runs loop once and reports whether it panicked.
func (in *Instance) runRecovered(name string, loop func(ctx context.Context)) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			in.Counters.Panics.Add(1)
			in.log.Errorf("panic in the %s (bug, please report), restarting it: %v %s", name, r, oneLine(debug.Stack()))
			panicked = true
		}
	}()
	loop(in.ctx)
	return false
}

// oneLine folds a stack trace into the log line it belongs to.
func oneLine(stack []byte) string {
	out := make([]byte, 0, len(stack))
	for _, c := range stack {
		if c == '\n' {
			c = ' '
		}
		if c != '\t' {
			out = append(out, c)
		}
	}
	return string(out)
}
