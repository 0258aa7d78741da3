// Command mkchunk turns JSON lines into a Fluent Bit chunk file, the bytes
// Fluent Bit's tail input with a JSON parser would hand to an output. It
// feeds `make run` when no fluent-bit is installed.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: mkchunk IN.jsonl OUT.chunk")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "mkchunk:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	vals, err := fbchunk.Lines(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, fbchunk.FromValues(time.Now().Truncate(time.Second), vals), 0o644)
}
