package pairs

import (
	"bytes"
	"runtime"
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

func TestIndex(t *testing.T) {
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
		if got := Index([]byte(tc.data), &s); got != tc.want {
			t.Errorf("Index(%.20q... len %d) = %d, want %d", tc.data, len(tc.data), got, tc.want)
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
}

// FuzzSweepAgreesWithLoop: the vectorised sweep and the byte loop find
// the same pair, with up to MaxAdjacent pairs and a far one of any gap, at every offset of the
// text.
func FuzzSweepAgreesWithLoop(f *testing.F) {
	f.Add([]byte("Qu\x00xp\x00K_\x00AK\x05"), bytes.Repeat([]byte("aaQuaxpK_\\uAccessKey"), 10))
	f.Add([]byte("ab\x00"), []byte("a"))
	f.Add([]byte("ab\x00cd\x01ef\x02gh\x03ij\x04kl\x05mn\x06op\x0e"), bytes.Repeat([]byte("pa"), 70))
	f.Fuzz(func(t *testing.T, set, data []byte) {
		var s Set
		for i := 0; i+2 < len(set); i += 3 {
			s.Add(set[i], set[i+1], 1+int(set[i+2])%MaxGap)
		}
		for off := range min(len(data), 40) {
			if got, want := indexFast(data[off:], &s), indexLoop(data[off:], &s); got != want {
				t.Fatalf("%d pairs, offset %d: sweep %d, loop %d", s.Len(), off, got, want)
			}
		}
	})
}
