package lifegen_test
import ("fmt";"math/rand/v2";"os";"strconv";"testing";"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect";"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/lifegen";"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence")
func TestDbg(t *testing.T){
	seed, _ := strconv.Atoi(os.Getenv("SEED")); perm, _ := strconv.Atoi(os.Getenv("PERM")); grep := os.Getenv("GREP")
	sc := lifegen.Generate(uint64(seed))
	rng := rand.New(rand.NewPCG(uint64(seed), 0xa11))
	for p := 0; p <= perm; p++ {
		chunks := sc.Chunks(rng, sc.Arrival(rng, options.Delay))
		sc.Repair(chunks)
		restart := func(int) bool { return p%2 == 1 && rng.IntN(4) == 0 }
		s := sc.Sequence(options, chunks, rng, restart)
		if p < perm { continue }
		for _, st := range s.Steps {
			if st.Restart { fmt.Println("RESTART"); continue }
			for _, e := range st.Events() { b, _ := e["userIdentity"].(map[string]any); fmt.Println(" ", e["eventTime"], e["time"], e["eventName"], e["eventID"], e["id"], b["accessKeyId"], b["userName"], e["requestParameters"]) }
			fmt.Println("--")
		}
		sequence.Play(t, s, func(f detect.Finding){ fmt.Println("ALERT", f.Key) })
	}
	ref := sc.Sequence(options, sc.InOrder(), nil, nil)
	fmt.Println("REFERENCE"); sequence.Play(t, ref, func(f detect.Finding){ fmt.Println("ALERT", f.Key) })
	_ = grep
}
func TestDbg2(t *testing.T){
	seed, _ := strconv.Atoi(os.Getenv("SEED")); perm, _ := strconv.Atoi(os.Getenv("PERM"))
	sc := lifegen.Generate(uint64(seed))
	rng := rand.New(rand.NewPCG(uint64(seed), 0xa11))
	for p := 0; p <= perm; p++ {
		chunks := sc.Chunks(rng, sc.Arrival(rng, options.Delay))
		sc.Repair(chunks)
		restart := func(int) bool { return p%2 == 1 && rng.IntN(4) == 0 }
		_ = sc.Sequence(options, chunks, rng, restart)
		if p < perm { continue }
		for _, c := range chunks { for _, r := range c { fmt.Print("[") ; for _, i := range r { e := sc.Events[i]; fmt.Print(e.At.Format("15:04:05"), " ", e.Body["eventName"], " ", e.Account[:3], "; ") }; fmt.Println("]") }; fmt.Println("--") }
	}
}
func TestDbg3(t *testing.T){
	seed, _ := strconv.Atoi(os.Getenv("SEED")); perm, _ := strconv.Atoi(os.Getenv("PERM"))
	sc := lifegen.Generate(uint64(seed))
	rng := rand.New(rand.NewPCG(uint64(seed), 0xa11))
	for p := 0; p <= perm; p++ {
		chunks := sc.Chunks(rng, sc.Arrival(rng, options.Delay))
		sc.Repair(chunks)
		var rs []bool
		restart := func(int) bool { r := p%2 == 1 && rng.IntN(4) == 0; rs = append(rs, r); return r }
		s := sc.Sequence(options, chunks, rng, restart)
		if p < perm { continue }
		fmt.Println("restarts after chunks:", rs)
		for _, noRestart := range []bool{false, true} {
			s2 := s
			if noRestart { s2.Steps = nil; for _, st := range s.Steps { if !st.Restart { s2.Steps = append(s2.Steps, st) } } }
			n := 0
			sequence.Play(t, s2, func(f detect.Finding){ if f.Rule.ID == "aws.iam.exposed_not_quarantined" { n++; fmt.Println(noRestart, f.Key) } })
		}
	}
}
