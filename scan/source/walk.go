package source

import (
	"context"
	"sync"
)

// walkTree lists a tree from root, up to n nodes at once: a trail's tree
// (accounts, regions, years, months, days) is thousands of nodes, each a
// round trip to S3 or an open and a read of a directory, which on a cold
// disk or a network filesystem waits too. level lists one node: its
// objects go to emit (called by one goroutine at a time, in no particular
// order), the nodes under it are returned. The first error stops the walk.
func walkTree(ctx context.Context, root string, n int, level func(ctx context.Context, node string, emit func(Object) error) ([]string, error), emit func(Object) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, max(1, n))
	var emitMu sync.Mutex
	var wg sync.WaitGroup
	var walk func(node string)
	walk = func(node string) {
		defer wg.Done()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		subs, err := level(ctx, node, func(o Object) error {
			emitMu.Lock()
			defer emitMu.Unlock()
			return emit(o)
		})
		<-slots
		if err != nil {
			cancel(err)
			return
		}
		for _, sub := range subs {
			wg.Add(1)
			go walk(sub)
		}
	}
	wg.Add(1)
	go walk(root)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return err
	}
	return ctx.Err()
}
