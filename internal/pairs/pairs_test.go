package pairs

import (
	"bytes"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/cpu"
)

// The Makefile builds and tests with GOEXPERIMENT=simd: on a CPU that can
// run the vectorised sweep, a test binary without it would test the loop
// twice and the sweep never.
func TestFastWhereItCanBe(t *testing.T) {
	if runtime.GOARCH == "amd64" && cpu.X86.HasAVX2 && !Fast {
		t.Fatal("built without GOEXPERIMENT=simd: the vectorised sweep is not tested (make test sets it)")
	}
}

// first is the first pair's place, as the prefilter's walk finds it.
func first(data []byte, s *Set) int {
	var h Hits
	h.Reset(data, s, 0)
	return h.Next()
}

func TestFirst(t *testing.T) {
	var s Set
	for _, p := range []string{"Qu", "xp", "K_", `\u`, `\/`} {
		s.Add(p[0], p[1], 1)
	}
	s.Add('A', 'K', 6)
	long := bytes.Repeat([]byte("abcdefgh"), 40)
	for _, tc := range []struct {
		data string
		want int
	}{
		{"", -1},
		{"Q", -1},
		{"Qu", 0},
		{"aQ", -1},
		{"aQu", 1},
		{string(long), -1},
		{string(long) + "K_", len(long)},
		{string(long[:31]) + "xp", 31},
		{string(long[:32]) + "xp", 32},
		{string(long[:33]) + "xp" + string(long), 33},
		{string(long[:63]) + `\/`, 63},
		{"Q" + string(long), -1},
		{string(long[:31]) + "Q" + "u", 31}, // the pair across two blocks
		{string(long[:40]) + "AccessKey" + string(long[:40]), 40},
		{string(long[:40]) + "accessKey" + string(long[:40]), -1},
		{string(long[:40]) + "Access", -1},
	} {
		if got := first([]byte(tc.data), &s); got != tc.want {
			t.Errorf("first(%.20q... len %d) = %d, want %d", tc.data, len(tc.data), got, tc.want)
		}
	}
}

func TestAdd(t *testing.T) {
	var s Set
	for i := range MaxAdjacent {
		if !s.Add('a'+byte(i), 'b', 1) || !s.Add('a'+byte(i), 'b', 1) {
			t.Fatal("refused a pair with room")
		}
	}
	if s.Len() != MaxAdjacent || s.Add('z', 'z', 1) {
		t.Fatalf("len %d, or a ninth neighbouring pair added", s.Len())
	}
	if s.Add('a', 'b', 0) || s.Add('a', 'b', MaxGap+1) || !s.Add('a', 'b', MaxGap) || !s.Add('a', 'b', MaxGap) || s.Add('a', 'c', 2) {
		t.Fatal("a gap out of 1..MaxGap taken, MaxGap refused, or a second far pair taken")
	}
	if s.Len() != MaxAdjacent+1 {
		t.Fatalf("len %d with the far pair", s.Len())
	}
	var z Set
	if z.Add(0, 'a', 1) || z.Add('a', 0, 1) || z.Add(0, 'a', 5) || z.Len() != 0 {
		t.Fatal("a pair with a zero byte taken: zeros pad the last bytes")
	}
}

// TestWalk: every pair of a text dense with them, in order, and Seek
// skipping forward, inside a block and past it, and not back.
func TestWalk(t *testing.T) {
	var s Set
	s.Add('a', 'b', 1)
	data := bytes.Repeat([]byte("ab-"), 40) // a pair at every third byte
	var h Hits
	h.Reset(data, &s, 0)
	for want := 0; want < len(data); want += 3 {
		if got := h.Next(); got != want {
			t.Fatalf("walk gave %d, want %d", got, want)
		}
	}
	if got := h.Next(); got != -1 {
		t.Fatalf("walk gave %d past the last pair", got)
	}
	h.Reset(data, &s, 1)
	for _, step := range []struct{ seek, want int }{{0, 3}, {5, 6}, {7, 9}, {40, 42}, {40, 45}, {100, 102}, {200, -1}} {
		h.Seek(step.seek)
		if got := h.Next(); got != step.want {
			t.Fatalf("Seek(%d) then Next = %d, want %d", step.seek, got, step.want)
		}
	}
}

// walk is every place Hits gives over data from off, seeking forward by
// the amounts in seeks (cycled) after each.
func walk(data []byte, s *Set, off int, seeks []byte) []int {
	var h Hits
	h.Reset(data, s, off)
	var out []int
	for k := 0; ; k++ {
		i := h.Next()
		if i < 0 {
			return out
		}
		out = append(out, i)
		if len(seeks) > 0 {
			h.Seek(i + int(seeks[k%len(seeks)]%70))
		}
	}
}

// FuzzSweepAgreesWithLoop: the walk swept by the vectors and the walk a
// byte at a time give the same pairs, with up to MaxAdjacent pairs and a
// far one of any gap, from every offset of the text, seeking forward as
// the prefilter does.
func FuzzSweepAgreesWithLoop(f *testing.F) {
	f.Add([]byte("Qu\x00xp\x00K_\x00AK\x05"), bytes.Repeat([]byte("aaQuaxpK_\\uAccessKey"), 10), []byte{})
	f.Add([]byte("ab\x00"), []byte("a"), []byte{1})
	f.Add([]byte("eV\x04"), bytes.Repeat([]byte(`"eventVersion":"1.08",`), 8), []byte{5})
	f.Add([]byte("ab\x00cd\x01ef\x02gh\x03ij\x04kl\x05mn\x06op\x0e"), bytes.Repeat([]byte("pa"), 70), []byte{0, 3, 33})
	f.Fuzz(func(t *testing.T, set, data, seeks []byte) {
		var s Set
		for i := 0; i+2 < len(set); i += 3 {
			s.Add(set[i], set[i+1], 1+int(set[i+2])%MaxGap)
		}
		defer func(v bool) { vectorised = v }(vectorised)
		for off := range min(len(data), 40) {
			vectorised = true
			got := walk(data, &s, off, seeks)
			vectorised = false
			if want := walk(data, &s, off, seeks); !slices.Equal(got, want) {
				t.Fatalf("%d pairs, offset %d: swept %v, a byte at a time %v", s.Len(), off, got, want)
			}
		}
	})
}
