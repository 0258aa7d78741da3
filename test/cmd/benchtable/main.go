// Command benchtable reads `go test -bench` output (several -count runs)
// from stdin and prints the medians and the ratios issue #3 sets targets
// for, as the Markdown table the README's Performance section shows.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// streamLen matches test/bench: events per op in the Scan benchmarks.
const streamLen = 10000

var lineRe = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func main() {
	runs := map[string]map[string][]float64{} // benchmark -> unit -> values
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		m := lineRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := strings.TrimPrefix(m[1], "Benchmark")
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
			order = append(order, name)
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				runs[name][f[i+1]] = append(runs[name][f[i+1]], v)
			}
		}
	}
	med := func(name, unit string) float64 {
		v := slices.Clone(runs[name][unit])
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}

	fmt.Println("| benchmark | runs | MB/s | events/s | ns/op | allocs/op | B/op |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, n := range order {
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", n, len(runs[n]["ns/op"]),
			num(med(n, "MB/s")), num(med(n, "events/s")+med(n, "records/s")), num(med(n, "ns/op")),
			num(med(n, "allocs/op")), num(med(n, "B/op")))
	}

	fmt.Println()
	fmt.Println("| measure | result | target |")
	fmt.Println("|---|---|---|")
	for _, s := range []struct {
		shape  string
		target float64
	}{{"v2", 50}, {"legacy", 50}, {"logfile", 50}, {"jsonstring", 10}} {
		if base := med("Baseline/"+s.shape, "events/s"); base > 0 {
			r := med("Scan/"+s.shape, "events/s") / base
			fmt.Printf("| %s: events/s vs baseline | %.0fx | >= %.0fx %s |\n", s.shape, r, s.target, mark(r >= s.target))
		}
	}
	for _, s := range []string{"v2", "legacy", "logfile", "jsonstring"} {
		scan, contains := "NoCandidate/scan-"+s, "NoCandidate/contains-"+s
		if c := med(contains, "ns/op"); c > 0 {
			r := med(scan, "ns/op") / c
			fmt.Printf("| %s, no candidate: cost vs one bytes.Contains pass | %.2fx | <= 2x %s |\n", s, r, mark(r <= 2))
			a := med(scan, "allocs/op") / streamLen
			fmt.Printf("| %s, no candidate: allocations per record | %s | 0 %s |\n", s, num(a), mark(a == 0))
		}
	}
	for _, s := range []string{"v2", "legacy", "logfile", "jsonstring"} {
		if c := med("NoCandidate/contains-"+s, "ns/op"); c > 0 && med("NoCandidate/frame-"+s, "ns/op") > 0 {
			fmt.Printf("| %s, no candidate: framing alone (the reader's walk, no prefilter) vs one bytes.Contains pass | %.2fx | report |\n", s, med("NoCandidate/frame-"+s, "ns/op")/c)
		}
	}
	for _, s := range []string{"v2", "logfile", "keyless"} {
		c := med("WatchList/"+s+"/contains", "ns/op")
		if c == 0 {
			continue
		}
		for _, n := range []string{"keys-0", "keys-1", "keys-1000", "keys-100000", "keys-1000-users-1000"} {
			name := "WatchList/" + s + "/" + n
			if med(name, "ns/op") == 0 {
				continue
			}
			r := med(name, "ns/op") / c
			target := "report"
			if n == "keys-1000" {
				target = "<= 2x " + mark(r <= 2)
			}
			a := med(name, "allocs/op") / streamLen
			fmt.Printf("| watch list %s, %s, no candidate: records/s; cost vs one bytes.Contains pass; allocations per record | %s; %.2fx; %s | %s |\n",
				n, s, num(med(name, "records/s")), r, num(a), target)
		}
		if e := med("WatchList/"+s+"/keys-0", "ns/op"); e > 0 && s != "keyless" {
			fmt.Printf("| watch list, %s: 1,000 keys vs an empty list | %.2fx | report |\n", s, med("WatchList/"+s+"/keys-1000", "ns/op")/e)
		}
	}
	if a := med("AllQuarantine", "alerts/s"); a > 0 {
		fmt.Printf("| every record a quarantine: alerts/s | %s | > 100,000 %s |\n", num(a), mark(a > 100000))
		fmt.Printf("| every record a quarantine: allocations per alert | %.1f | report |\n", med("AllQuarantine", "allocs/op")/streamLen)
	}
	if a := med("PluginAllQuarantine", "alerts/s"); a > 0 {
		fmt.Printf("| every record a quarantine, through the .so with JSON encoding and the stdout sink: alerts/s | %s | report |\n", num(a))
	}
	if a := med("PluginDurable", "alerts/s"); a > 0 {
		fmt.Printf("| every record a quarantine, through the .so with State_Dir (stored and fsync'd per flush): alerts/s | %s | report |\n", num(a))
	}
	if r := med("Plugin2MBChunks", "records/s"); r > 0 {
		fmt.Printf("| through the .so, 2 MB chunks: records/s | %s (%s ns per flush) | report |\n", num(r), num(med("Plugin2MBChunks", "ns/flush")))
	}
	if f := med("PluginFlushOverhead", "ns/flush"); f > 0 {
		fmt.Printf("| per-flush overhead, cgo boundary + sink, nothing to send | %s ns | report |\n", num(f))
	}
	if m := med("PluginMemory10M", "maxrss_MB"); m > 0 {
		fmt.Printf("| harness + .so resident memory after %s records | %.1f MB | bounded |\n", num(med("PluginMemory10M", "records")), m)
	}
	scanRows(med, runs)
}

func mark(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(MISSED)"
}

// num prints with thousands separators, no decimals above 100.
func num(v float64) string {
	if v != 0 && v < 100 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// scanRows are the scan command's measures (issue #16): the scan against
// the decompression floor on the clean and the worst-case archive (timed
// alternately, medians of the runs), the responder's tools, Security Lake
// Parquet against .json.gz, S3 at 20 ms a request, one worker against all.
func scanRows(med func(name, unit string) float64, runs map[string]map[string][]float64) {
	var workers []string
	for name := range runs {
		if w, ok := strings.CutPrefix(name, "ScanVsFloor/clean/workers="); ok {
			workers = append(workers, w)
		}
	}
	slices.Sort(workers)
	for _, w := range workers {
		for _, a := range []string{"clean", "worst"} {
			n := "ScanVsFloor/" + a + "/workers=" + w
			if x := med(n, "x-floor"); x > 0 {
				c := med(n, "x-floor-cpu")
				fmt.Printf("| scan, %s archive, %s worker(s): MB/s of gzipped CloudTrail (floor) | %.0f (%.0f) | report |\n", a, w, med(n, "scan-MB/s"), med(n, "floor-MB/s"))
				fmt.Printf("| scan, %s archive, %s worker(s): wall time vs decompression alone (alternating runs) | %.2fx | <= 1.25x %s |\n", a, w, x, mark(x <= 1.25))
				fmt.Printf("| scan, %s archive, %s worker(s): CPU time vs decompression alone (alternating runs) | %.2fx | <= 1.25x %s |\n", a, w, c, mark(c <= 1.25))
			}
		}
		if s, k := med("Decompress/stdlib/workers="+w, "ns/op"), med("Decompress/klauspost/workers="+w, "ns/op"); s > 0 && k > 0 {
			fmt.Printf("| gzip, %s worker(s): klauspost/compress vs the standard library | %.2fx faster | report |\n", w, s/k)
		}
		if k, l := med("Decompress/klauspost/workers="+w, "ns/op"), med("Decompress/libdeflate/workers="+w, "ns/op"); k > 0 && l > 0 {
			fmt.Printf("| gzip, %s worker(s): libdeflate (C, through cgo; the scan does not use it) vs klauspost/compress | %.2fx faster | report |\n", w, k/l)
		}
		if x, c := med("Lake/workers="+w, "x-json"), med("Lake/workers="+w, "x-json-cpu"); x > 0 {
			fmt.Printf("| Security Lake Parquet vs the same events as .json.gz, %s worker(s): wall (CPU) time | %.2fx (%.2fx) | <= 1.5x %s |\n", w, x, c, mark(x <= 1.5))
		}
		if scan := med("Responder/scan/workers="+w, "ns/op"); scan > 0 {
			for _, tool := range []string{"zcat-jq", "rg", "zgrep", "zcat"} {
				if t := med("Responder/"+tool+"/workers="+w, "ns/op"); t > 0 {
					fmt.Printf("| %s worker(s): %s vs the scan | %.1fx the scan's time | report |\n", w, tool, t/scan)
				}
			}
		}
	}
	if len(workers) > 1 {
		one, all := "ScanVsFloor/clean/workers="+workers[0], "ScanVsFloor/clean/workers="+workers[len(workers)-1]
		fmt.Printf("| scan, clean archive: %s workers vs 1 | %.2fx | near %s |\n", workers[len(workers)-1], med(all, "scan-MB/s")/med(one, "scan-MB/s"), workers[len(workers)-1])
		fmt.Printf("| decompression alone: %s workers vs 1 | %.2fx | report |\n", workers[len(workers)-1], med(all, "floor-MB/s")/med(one, "floor-MB/s"))
	}
	var concs []int
	for name := range runs {
		if c, ok := strings.CutPrefix(name, "ScanS3/concurrency="); ok {
			if n, err := strconv.Atoi(c); err == nil {
				concs = append(concs, n)
			}
		}
	}
	slices.Sort(concs)
	for _, c := range concs {
		fmt.Printf("| S3 at 20 ms a request, %d requests in flight: files/s | %.0f | report |\n", c, med(fmt.Sprintf("ScanS3/concurrency=%d", c), "files/s"))
	}
}
