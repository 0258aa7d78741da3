package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// No Docker engine runs here, so the Dockerfile is checked as text: the
// pins are real versions, the Go version is go.mod's, the .so is the one
// `make` builds, and it lands where conf/plugins.conf says.
func TestDockerfile(t *testing.T) {
	read := func(elem ...string) string {
		b, err := os.ReadFile(paths.Repo(elem...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	docker, makefile, gomod, plugins := read("build", "Dockerfile"), read("Makefile"), read("go.mod"), read("conf", "plugins.conf")

	arg := func(name string) string {
		m := regexp.MustCompile(`(?m)^ARG ` + name + `=(\S+)$`).FindStringSubmatch(docker)
		if m == nil {
			t.Fatalf("Dockerfile has no ARG %s", name)
		}
		return m[1]
	}
	if v := arg("FLUENT_BIT_VERSION"); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("Fluent Bit is not pinned to a release: %q", v)
	}
	// The pin is the newest version the README's table says was verified,
	// and the README's Deploy section names it.
	var verified []string
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+)\.(\d+)\.(\d+) \|.*\| verified`).FindAllStringSubmatch(read("README.md"), -1) {
		verified = append(verified, fmt.Sprintf("%03s.%03s.%03s", m[1], m[2], m[3]))
	}
	slices.Sort(verified)
	pin := strings.Split(arg("FLUENT_BIT_VERSION"), ".")
	if len(verified) < 2 || len(pin) != 3 || verified[len(verified)-1] != fmt.Sprintf("%03s.%03s.%03s", pin[0], pin[1], pin[2]) {
		t.Errorf("Dockerfile pins Fluent Bit %s; the README verified %v: pin the newest", arg("FLUENT_BIT_VERSION"), verified)
	}
	if !strings.Contains(read("README.md"), "pinned version ("+arg("FLUENT_BIT_VERSION")+")") {
		t.Errorf("the README's Deploy section does not name the pinned version %s", arg("FLUENT_BIT_VERSION"))
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)[1]
	if v := arg("GO_VERSION"); v != goVersion {
		t.Errorf("Dockerfile builds with Go %s, go.mod says %s", v, goVersion)
	}
	for _, want := range []string{
		"FROM golang:${GO_VERSION}-bookworm AS build",
		"FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}",
	} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	so := regexp.MustCompile(`(?m)^SO\s*:=\s*(\S+)$`).FindStringSubmatch(makefile)[1]
	if !strings.Contains(docker, "RUN make "+so+"\n") || !strings.Contains(docker, "COPY --from=build /src/"+so+" ") {
		t.Errorf("Dockerfile does not build and copy the Makefile's %s", so)
	}
	dest := regexp.MustCompile(`COPY --from=build \S+ (\S+)`).FindStringSubmatch(docker)[1]
	if !strings.Contains(plugins, "Path "+dest) {
		t.Errorf("the .so lands at %s, conf/plugins.conf loads something else:\n%s", dest, plugins)
	}
	if strings.HasPrefix(dest[strings.LastIndex(dest, "/")+1:], "flb-") {
		t.Errorf("%s would be taken for a C plugin", dest)
	}
	if !strings.Contains(docker, "COPY conf/plugins.conf /fluent-bit/etc/plugins.conf") {
		t.Error("Dockerfile does not install the plugins file")
	}
	// COPY . . must not carry a host-built .so (of another architecture,
	// or stale) into the image's build.
	ignore := strings.Fields(read(".dockerignore"))
	for _, want := range []string{"build/*", ".git"} {
		if !slices.Contains(ignore, want) {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}
