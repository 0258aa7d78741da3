package scan

import (
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
)

// SaveState keeps the cases a scan ended with in the plugin's store in
// dir (its State_Dir), so the plugin started over it watches those keys:
// a case the store already has, seen there later, is left as it is, and
// the store's event-time watermark only moves forward. It returns how
// many cases it wrote.
func SaveState(dir string, cases []*lifecycle.Case, watermark int64) (int, error) {
	st, _, err := state.Open(state.Options{Dir: dir, MaxQueueBytes: 1 << 30, DedupMax: 1, DedupTTL: 1})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	kept := map[string]int64{}
	old, err := st.Cases(func(id string, b []byte) error {
		if c, err := lifecycle.UnmarshalCase(b); err == nil {
			kept[id] = c.LastSeen
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	ch := &state.Changes{Cases: map[string][]byte{}, Watermark: max(old, watermark)}
	for _, c := range cases {
		if last, ok := kept[c.ID()]; ok && last > c.LastSeen {
			continue
		}
		ch.Cases[c.ID()] = c.MarshalMsg(nil)
	}
	if err := st.Save(ch); err != nil {
		return 0, err
	}
	return len(ch.Cases), nil
}
