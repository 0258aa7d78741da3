// Package makebin builds a Makefile target once per test binary and
// returns its path, for tests that run what `make` builds.
package makebin

import (
	"fmt"
	"os/exec"
	"sync"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var (
	mu    sync.Mutex
	built = map[string]error{}
)

// Path runs `make target` (the first time) and returns the target's path
// in the repository.
func Path(t testing.TB, target string) string {
	t.Helper()
	mu.Lock()
	err, done := built[target]
	if !done {
		if out, e := exec.Command("make", "-C", paths.Root(), target).CombinedOutput(); e != nil {
			err = fmt.Errorf("make %s: %v\n%s", target, e, out)
		}
		built[target] = err
	}
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return paths.Repo(target)
}
