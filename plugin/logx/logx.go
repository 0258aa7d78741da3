// Package logx writes log lines in Fluent Bit's own format, so the plugin's
// messages read like the core's:
//
//	[2026/11/22 14:16:31] [ info] [output:cloudtrail_quarantine:cloudtrail_quarantine.0] message
//
// A message may quote what a record or a receiver said (an event id, an
// error answer), so every line is made safe whatever wrote it: each
// configured secret, in every form it travels in, is replaced; control
// characters (a newline that would forge a line, an ANSI escape that would
// repaint a terminal) are written as \uXXXX; and the message is cut to
// MaxMessage bytes.
package logx

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// MaxMessage bounds one line's message (after escaping); the rest is cut,
// with a marker.
const MaxMessage = 16 << 10

// Logger is safe for concurrent use; each line is written with one Write.
type Logger struct {
	prefix string
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	// redact replaces every configured secret in a line, whatever wrote
	// it: an error from a library or an answer a receiver echoed back.
	redact *strings.Replacer
	// secrets are the forms redact replaces, for the tail check.
	secrets []string
	// failed counts the lines that could not be written (stderr closed).
	failed atomic.Int64
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

// WriteErrors counts the lines that could not be written: with stderr
// gone (a reader that went away) the plugin goes on, and the metrics say
// what it could not log.
func (l *Logger) WriteErrors() int64 { return l.failed.Load() }

// Redact makes every later line show each of secrets as (redacted), as it
// is and URL-encoded (query and path escaping), the forms a receiver may
// echo it back in.
func (l *Logger) Redact(secrets []string) {
	var forms []string
	seen := map[string]bool{}
	for _, s := range secrets {
		for _, f := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			if f != "" && !seen[f] {
				seen[f] = true
				forms = append(forms, f)
			}
		}
	}
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, redacted)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redact = strings.NewReplacer(pairs...)
	l.secrets = forms
}

const redacted = "(redacted)"

// minTail is the shortest head of a secret that a line may not end with:
// a receiver's answer is quoted cut short, possibly inside a secret.
const minTail = 4

func (l *Logger) log(level, format string, a []any) {
	msg := fmt.Sprintf(format, a...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.redact != nil {
		msg = redactTail(l.redact.Replace(msg), l.secrets)
	}
	msg = Escape(msg)
	if len(msg) > MaxMessage {
		keep := MaxMessage
		for keep > 0 && !utf8.RuneStart(msg[keep]) {
			keep--
		}
		msg = msg[:keep] + "...[" + strconv.Itoa(len(msg)-keep) + " bytes cut]"
	}
	line := fmt.Sprintf("[%s] [%s] %s%s\n", l.now().Format("2006/01/02 15:04:05"), level, l.prefix, msg)
	if _, err := io.WriteString(l.w, line); err != nil {
		l.failed.Add(1)
	}
}

// redactTail replaces the end of msg when it is the head of a secret (at
// least minTail bytes of it): what is left of a secret in an answer cut
// short.
func redactTail(msg string, secrets []string) string {
	for _, s := range secrets {
		for n := len(s) - 1; n >= minTail; n-- {
			if strings.HasSuffix(msg, s[:n]) {
				return msg[:len(msg)-n] + redacted
			}
		}
	}
	return msg
}

// Escape writes the characters that could forge or hide a log line as
// \uXXXX: C0 and C1 controls (newline, carriage return, the escape that
// starts an ANSI sequence, NUL, tab), DEL, the Unicode line and paragraph
// separators and the bidirectional overrides; a byte that is not UTF-8 is
// written as \xNN. Anything else is kept as it is.
func Escape(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && !unsafeRune(r) {
				i += n
				continue
			}
		}
		break
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r < 0x20 || r == 0x7f || unsafeRune(r):
			b.WriteString(`\u`)
			b.WriteString(hex2(byte(r >> 8)))
			b.WriteString(hex2(byte(r)))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports the non-ASCII characters that move, hide or reorder
// text on a terminal: C1 controls, line and paragraph separators,
// bidirectional marks, embeddings, overrides and isolates.
func unsafeRune(r rune) bool {
	return r >= 0x80 && r <= 0x9f || r == 0x2028 || r == 0x2029 || r == 0x200e || r == 0x200f ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}
