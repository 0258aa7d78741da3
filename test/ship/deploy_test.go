package ship_test

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

type fbConfig struct {
	Pipeline struct {
		Inputs  []map[string]any `yaml:"inputs"`
		Outputs []map[string]any `yaml:"outputs"`
	} `yaml:"pipeline"`
}

type getter map[string]any

func (g getter) Get(k string) string {
	for key, v := range g {
		if strings.EqualFold(key, k) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// checkFluentBit: a forward input on the socket ship writes to, with
// filesystem storage and threaded, and our output on ship's tag, with
// keys the plugin takes.
func checkFluentBit(t *testing.T, where, text, socket string) {
	t.Helper()
	var c fbConfig
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	in := slices.IndexFunc(c.Pipeline.Inputs, func(m map[string]any) bool { return m["name"] == "forward" && m["unix_path"] == socket })
	if in < 0 {
		t.Fatalf("%s: no forward input on %s", where, socket)
	}
	if i := c.Pipeline.Inputs[in]; !slices.Contains([]string{"on", "true"}, fmt.Sprint(i["threaded"])) || i["storage.type"] != "filesystem" {
		t.Errorf("%s: ship's forward input is not threaded with filesystem storage: %v", where, i)
	}
	out := slices.IndexFunc(c.Pipeline.Outputs, func(m map[string]any) bool { return m["name"] == "cloudtrail_quarantine" })
	if out < 0 || c.Pipeline.Outputs[out]["match"] != "aws.cloudtrail.events" {
		t.Fatalf("%s: no cloudtrail_quarantine output matching ship's tag", where)
	}
	if _, err := config.Load(getter(c.Pipeline.Outputs[out])); err != nil {
		t.Errorf("%s: the plugin would not start: %v", where, err)
	}
}

// runArgs runs ship with a deployment's flags, its source swapped for an
// empty directory and its socket for a test receiver (a flag given again
// wins), and fails unless it takes them.
func runArgs(t *testing.T, where string, args []string) {
	t.Helper()
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	flags := append(slices.Clone(args[:len(args)-1]), "--forward", "unix://"+recv.Addr(), "--metrics-listen", "127.0.0.1:0", t.TempDir())
	if out, code := shipOnce(t, nil, flags...); code != 0 {
		t.Fatalf("%s: ship %q: exit %d\n%s", where, flags, code, out)
	}
}

func flagValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// The sidecar manifest: one pod, ship and Fluent Bit sharing the socket
// directory; ship's flags are ones it takes; its socket is the forward
// input of the Fluent Bit config beside it (which conf/fluent-bit-ship.yaml
// is too), and the pod's grace period covers ship's shutdown bound.
func TestSidecarManifest(t *testing.T) {
	raw, err := os.ReadFile(paths.Repo("conf", "k8s", "ship-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	var fbYAML string
	var set struct {
		Kind string
		Spec struct {
			Replicas int
			Template struct {
				Spec struct {
					Grace      int `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Name          string
						Command, Args []string
						VolumeMounts  []struct {
							Name      string
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					}
				}
			}
		}
	}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		b, _ := yaml.Marshal(doc)
		switch doc["kind"] {
		case "ConfigMap":
			fbYAML = doc["data"].(map[string]any)["fluent-bit.yaml"].(string)
		case "StatefulSet":
			if err := yaml.Unmarshal(b, &set); err != nil {
				t.Fatal(err)
			}
		}
	}
	if set.Kind != "StatefulSet" || set.Spec.Replicas != 1 || len(set.Spec.Template.Spec.Containers) != 2 || fbYAML == "" {
		t.Fatalf("not one pod of Fluent Bit and ship with its config: %+v", set)
	}
	mounts := map[string]map[string]string{}
	var args []string
	for _, c := range set.Spec.Template.Spec.Containers {
		mounts[c.Name] = map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[c.Name][m.Name] = m.MountPath
		}
		if c.Name == "ship" {
			if c.Command[0] != "cloudtrail-quarantine" || c.Args[0] != "ship" {
				t.Fatalf("the ship container runs %q %q", c.Command, c.Args)
			}
			args = c.Args[1:]
		}
	}
	socket := strings.TrimPrefix(flagValue(args, "--forward"), "unix://")
	dir := socket[:strings.LastIndex(socket, "/")]
	if mounts["ship"]["sockets"] != dir || mounts["fluent-bit"]["sockets"] != dir {
		t.Fatalf("the socket %s is not on a volume both containers mount: %v", socket, mounts)
	}
	checkFluentBit(t, "the ConfigMap", fbYAML, socket)
	shipConf, _ := os.ReadFile(paths.Repo("conf", "fluent-bit-ship.yaml"))
	checkFluentBit(t, "conf/fluent-bit-ship.yaml", string(shipConf), socket)
	shutdown, _ := time.ParseDuration(flagValue(args, "--shutdown-timeout"))
	if g := time.Duration(set.Spec.Template.Spec.Grace) * time.Second; shutdown == 0 || g <= shutdown {
		t.Errorf("grace period %v does not cover --shutdown-timeout %v", g, shutdown)
	}
	if !strings.HasPrefix(args[len(args)-1], "sqs://") {
		t.Errorf("the sidecar ships %q, not a queue", args[len(args)-1])
	}
	runArgs(t, "the manifest", args)
}

// The systemd unit: ship with flags it takes, on the socket of
// conf/fluent-bit-ship.yaml, stopped by SIGTERM with time for its
// shutdown bound.
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open(paths.Repo("conf", "systemd", "cloudtrail-quarantine-ship.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	args := strings.Fields(keys["ExecStart"])
	if len(args) < 3 || !strings.HasSuffix(args[0], "/cloudtrail-quarantine") || args[1] != "ship" {
		t.Fatalf("ExecStart %q", keys["ExecStart"])
	}
	args = args[2:]
	if keys["KillSignal"] != "SIGTERM" || keys["Restart"] != "always" {
		t.Errorf("KillSignal %q Restart %q", keys["KillSignal"], keys["Restart"])
	}
	stop, _ := time.ParseDuration(keys["TimeoutStopSec"] + "s")
	shutdown, _ := time.ParseDuration(flagValue(args, "--shutdown-timeout"))
	if shutdown == 0 || stop <= shutdown {
		t.Errorf("TimeoutStopSec %v does not cover --shutdown-timeout %v", stop, shutdown)
	}
	shipConf, _ := os.ReadFile(paths.Repo("conf", "fluent-bit-ship.yaml"))
	checkFluentBit(t, "conf/fluent-bit-ship.yaml", string(shipConf), strings.TrimPrefix(flagValue(args, "--forward"), "unix://"))
	runArgs(t, "the unit", args)
}
