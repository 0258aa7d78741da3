package e2e

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// A receiver that answers 401 with the Authorization header it got (as
// it got it, URL-encoded, and cut short at the end of the part of the
// answer the plugin quotes): the HTTP Basic credential, built from
// HTTP_User and HTTP_Passwd or from the user and password in HTTP_URL,
// and the password itself never reach a log line, in any of those forms.
func TestEchoedCredentialsNeverLogged(t *testing.T) {
	const pw, urlPW = "p@ss w/rd+&=x 8080", "url pw/+ 31337"
	cut := false
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.WriteHeader(http.StatusUnauthorized)
		if cut {
			// The plugin quotes 300 bytes: the credential is cut 10
			// characters in.
			pad := 300 - len("denied: ") - len("Basic ") - 10
			w.Write([]byte("denied: " + strings.Repeat("x", pad) + auth))
			return
		}
		w.Write([]byte("denied: " + auth + " form=" + url.QueryEscape(auth)))
	}))
	defer echo.Close()
	withUser := strings.Replace(echo.URL, "http://", "http://alice:"+url.PathEscape(urlPW)+"@", 1)
	basic := base64.StdEncoding.EncodeToString([]byte("bob:" + pw))
	urlBasic := base64.StdEncoding.EncodeToString([]byte("alice:" + urlPW))
	cases := map[string]struct {
		props []harness.KV
		cut   bool
		leaks []string
	}{
		"HTTP_User and HTTP_Passwd": {kv("HTTP_URL", echo.URL+"/hook", "HTTP_User", "bob", "HTTP_Passwd", pw), false,
			[]string{pw, basic, url.QueryEscape(basic), url.QueryEscape(pw)}},
		"user and password in HTTP_URL": {kv("HTTP_URL", withUser+"/hook"), false,
			[]string{urlPW, url.PathEscape(urlPW), urlBasic, url.QueryEscape(urlBasic)}},
		"answer cut inside the credential": {kv("HTTP_URL", echo.URL+"/hook", "HTTP_User", "bob", "HTTP_Passwd", pw), true,
			[]string{pw, basic, basic[:10]}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cut = c.cut
			props := append(kv("Alert_Output", "http", "HTTP_Timeout", "2s"), c.props...)
			res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}}})
			if !strings.Contains(res.Stderr, "401 Unauthorized: denied: ") {
				t.Fatalf("the receiver's answer is not quoted:\n%s", tail(res.Stderr))
			}
			for _, leak := range c.leaks {
				if strings.Contains(res.Stderr, leak) || strings.Contains(res.Stdout, leak) {
					t.Errorf("%q logged:\n%s", leak, tail(res.Stderr))
				}
			}
		})
	}
}
