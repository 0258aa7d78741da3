package logx

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	cases := map[string]string{
		"plain text, é and 日本":     "plain text, é and 日本",
		"a\nb":                     `a\u000ab`,
		"\x1b[31mred\x1b[0m":       `\u001b[31mred\u001b[0m`,
		"tab\tcr\rnul\x00del\x7f":  `tab\u0009cr\u000dnul\u0000del\u007f`,
		"csi\u009b2J":              `csi\u009b2J`,
		"line\u2028sep\u2029":      `line\u2028sep\u2029`,
		"bidi\u202eevil\u2066":     `bidi\u202eevil\u2066`,
		"bad \xff\xfe utf8 \xc3":   `bad \xff\xfe utf8 \xc3`,
		"replacement \ufffd stays": "replacement \ufffd stays",
	}
	for in, want := range cases {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// safe reports the first byte or character of line (newline aside at its
// end) that a terminal or a log reader would act on.
func safe(line string) (string, bool) {
	body, ok := strings.CutSuffix(line, "\n")
	if !ok {
		return "no newline at the end", false
	}
	for i, r := range body {
		if r < 0x20 || r == 0x7f || unsafeRune(r) {
			return body[max(0, i-20):min(len(body), i+20)], false
		}
	}
	return "", utf8.ValidString(body)
}

// Whatever a message holds, the logger writes one line, with no control
// character in it, within MaxMessage.
func FuzzLogLine(f *testing.F) {
	f.Add("event id \x1b[2J\n[2026/01/01 00:00:00] [ info] forged\r\u009b\u2028 \xff")
	f.Add(strings.Repeat("\n", 100))
	f.Fuzz(func(t *testing.T, msg string) {
		var buf bytes.Buffer
		l := NewTo(&buf, "x")
		l.Infof("delivered: %s", msg)
		if where, ok := safe(buf.String()); !ok || strings.Count(buf.String(), "\n") != 1 {
			t.Fatalf("unsafe line at %q: %q", where, buf.String())
		}
		if buf.Len() > MaxMessage+200 {
			t.Fatalf("line of %d bytes", buf.Len())
		}
	})
}

func TestLongMessageIsCut(t *testing.T) {
	var buf bytes.Buffer
	NewTo(&buf, "x").Warnf("answer: %s", strings.Repeat("\x01", 1<<20))
	line := buf.String()
	if len(line) > MaxMessage+200 || !strings.HasSuffix(line, " bytes cut]\n") {
		t.Fatalf("%d bytes, ending %q", len(line), line[max(0, len(line)-40):])
	}
	if _, ok := safe(line); !ok {
		t.Fatal("unsafe line")
	}
}

// A receiver may echo a secret as it got it, URL-encoded, or cut short at
// the end of its quoted answer: none of it is logged.
func TestSecretsInEveryForm(t *testing.T) {
	const pw = "p@ss w/rd+&=x"
	basic := base64.StdEncoding.EncodeToString([]byte("bob:" + pw))
	var buf bytes.Buffer
	l := NewTo(&buf, "x")
	l.Redact([]string{pw, basic, ""})
	l.Errorf("raw %s query %s path %s basic Basic %s basic-query %s", pw, url.QueryEscape(pw), url.PathEscape(pw), basic, url.QueryEscape(basic))
	l.Errorf("http 401: Authorization: Basic %s", basic[:len(basic)-5])
	out := buf.String()
	for _, leak := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), basic, url.QueryEscape(basic), basic[:len(basic)-5], "p@ss", "Ym9i"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q leaked:\n%s", leak, out)
		}
	}
	if strings.Count(out, "(redacted)") != 6 {
		t.Errorf("want 6 redactions:\n%s", out)
	}
}

type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// A log line that cannot be written (stderr gone) is counted, and the
// logger goes on.
func TestWriteErrorsAreCounted(t *testing.T) {
	l := NewTo(brokenPipe{}, "x")
	l.Infof("one")
	l.Warnf("two")
	if n := l.WriteErrors(); n != 2 {
		t.Fatalf("%d write errors counted", n)
	}
}
