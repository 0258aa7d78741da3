// Package paths locates the repository and the shared data beside it, so
// tests in any package read fixtures and the corpus in place.
package paths

import (
	"os"
	"path/filepath"
	"sync"
)

var root = sync.OnceValue(func() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("paths: no go.mod above the working directory")
		}
		dir = parent
	}
})

// Root is the repository root (the directory holding go.mod).
func Root() string { return root() }

// Repo joins elem onto the repository root.
func Repo(elem ...string) string { return filepath.Join(append([]string{Root()}, elem...)...) }

// Corpus joins elem onto ../shared/corpus, the shared CloudTrail corpus.
func Corpus(elem ...string) string {
	return filepath.Join(append([]string{Root(), "..", "shared", "corpus"}, elem...)...)
}
