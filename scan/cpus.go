package scan

import (
	"fmt"
	"runtime"
)

func runtimeCPUs() int { return runtime.GOMAXPROCS(0) }

// safely runs fn, turning a panic into an error: nothing the scan starts
// may take the process down.
func safely(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error (please report it): %v", p)
		}
	}()
	return fn()
}
