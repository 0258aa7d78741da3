package chunk

import (
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// skip must frame exactly as msgp.Skip does, on valid and invalid input.
func FuzzSkipAgreesWithMsgp(f *testing.F) {
	seed := msgp.AppendMapHeader(nil, 2)
	seed = msgp.AppendString(seed, "k")
	seed = msgp.AppendArrayHeader(seed, 3)
	seed = msgp.AppendFloat64(seed, 1.5)
	seed = msgp.AppendBytes(seed, make([]byte, 300))
	seed, _ = msgp.AppendExtension(seed, &msgp.RawExtension{Type: 5, Data: make([]byte, 20)})
	seed = msgp.AppendInt64(seed, -1<<40)
	seed = msgp.AppendString(seed, string(make([]byte, 70000)))
	f.Add(seed)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xc1})
	f.Add([]byte{0xd9})
	f.Fuzz(func(t *testing.T, b []byte) {
		rest, errM := msgp.Skip(b)
		end, errS := skip(b, 0)
		if (errM == nil) != (errS == nil) {
			t.Fatalf("msgp err %v, skip err %v", errM, errS)
		}
		if errM == nil && end != len(b)-len(rest) {
			t.Fatalf("msgp ends at %d, skip at %d", len(b)-len(rest), end)
		}
	})
}
