package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
)

var formats = map[string]alert.Format{"native": alert.Native, "ecs": alert.ECS, "ocsf": alert.OCSF}

// writeAlerts writes the findings' alerts, one JSON document a line (the
// plugin's file and stdout sinks write the same lines), or as a table.
func writeAlerts(w io.Writer, fs []detect.Finding, format string, includeEvent bool, runbookBase string) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	if format == "table" {
		if len(fs) == 0 {
			fmt.Fprintln(bw, "no alerts")
		} else {
			writeTable(bw, fs)
		}
		return bw.Flush()
	}
	var buf []byte
	for _, f := range fs {
		a := alert.New(f, includeEvent)
		a.SetRunbookBase(runbookBase)
		buf = append(a.AppendJSON(buf[:0], formats[format]), '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeTable: what a person at a terminal wants first. TIME is the
// alert's event_time, in UTC.
func writeTable(w io.Writer, fs []detect.Finding) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tSEVERITY\tRULE\tACCOUNT\tREGION\tTITLE")
	for _, f := range fs {
		a := alert.New(f, false)
		title := a.Title
		if len(title) > 140 {
			title = title[:137] + "..."
		}
		region := a.Region
		if region == "" {
			region = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tableTime(a.EventTime), a.Rule.Severity,
			strings.TrimPrefix(f.Rule.ID, "aws."), a.AccountID, region, title)
	}
	tw.Flush()
}

// tableTime is an alert's event_time in UTC to the second, Z-marked.
func tableTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// stateDir is the State_Dir --state names: the directory itself, or
// the path of its store file.
func stateDir(p string) (string, error) {
	if filepath.Base(p) == state.FileName {
		return filepath.Dir(p), nil
	}
	if info, err := os.Stat(p); err == nil && !info.IsDir() {
		return "", fmt.Errorf("%s is a file, not the plugin's %s: give its State_Dir", p, state.FileName)
	}
	return p, nil
}
