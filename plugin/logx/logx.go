// Package logx writes log lines in Fluent Bit's own format, so the plugin's
// messages read like the core's:
//
//	[2026/11/22 14:16:31] [ info] [output:cloudtrail_quarantine:cloudtrail_quarantine.0] message
package logx

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Logger is safe for concurrent use; each line is written with one Write.
type Logger struct {
	prefix string
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	// redact replaces every configured secret in a line, whatever wrote
	// it: an error from a library or an answer a receiver echoed back.
	redact *strings.Replacer
}

// New logs to stderr for the named plugin instance.
func New(instance string) *Logger { return NewTo(os.Stderr, instance) }

// NewTo logs to w.
func NewTo(w io.Writer, instance string) *Logger {
	return &Logger{prefix: "[output:cloudtrail_quarantine:" + instance + "] ", w: w, now: time.Now}
}

// NewCommand logs to w for a command of ours outside Fluent Bit
// (`cloudtrail-quarantine ship`): "[...] [ info] [ship] message".
func NewCommand(w io.Writer, name string) *Logger {
	return &Logger{prefix: "[" + name + "] ", w: w, now: time.Now}
}

func (l *Logger) Errorf(format string, a ...any) { l.log("error", format, a) }
func (l *Logger) Warnf(format string, a ...any)  { l.log(" warn", format, a) }
func (l *Logger) Infof(format string, a ...any)  { l.log(" info", format, a) }

// Redact makes every later line show each of secrets as (redacted).
func (l *Logger) Redact(secrets []string) {
	var pairs []string
	for _, s := range secrets {
		if s != "" {
			pairs = append(pairs, s, "(redacted)")
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redact = strings.NewReplacer(pairs...)
}

func (l *Logger) log(level, format string, a []any) {
	msg := fmt.Sprintf(format, a...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.redact != nil {
		msg = l.redact.Replace(msg)
	}
	line := fmt.Sprintf("[%s] [%s] %s%s\n", l.now().Format("2006/01/02 15:04:05"), level, l.prefix, msg)
	io.WriteString(l.w, line) //nolint:errcheck // nowhere left to report a failed log write
}
