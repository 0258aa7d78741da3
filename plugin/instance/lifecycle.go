package instance

import (
	"context"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
)

// timerTick is how often the exposures' waits are looked at; the wall
// clock moves them on while the stream is silent.
const timerTick = 500 * time.Millisecond

// timers fires the exposures no quarantine followed, also when no record
// arrives; an alert that cannot be delivered (or stored) fires again after
// a backoff.
func (in *Instance) timers(ctx context.Context) {
	failures := 0
	tick := time.NewTicker(timerTick)
	defer tick.Stop()
	for {
		wait := tick.C
		var backoffC <-chan time.Time
		if failures > 0 {
			backoffC, wait = time.After(backoff(failures)), nil
		}
		select {
		case <-in.stop:
			return
		case <-wait:
		case <-backoffC:
		}
		if in.fireDue() {
			failures = 0
		} else {
			failures++
		}
	}
}

// fireDue alerts on the exposures whose wait is over and reports whether
// that went through (or there was nothing to do).
func (in *Instance) fireDue() bool {
	in.lifeMu.Lock()
	defer in.lifeMu.Unlock()
	fs := in.life.Due(time.Now())
	in.noteLifecycle()
	if len(fs) == 0 {
		// Expiry may have dropped cases: keep that too.
		return in.saveLifecycle()
	}
	return in.take(fs) == OK
}

// noteLifecycle copies the engine's numbers into the counters and warns
// when Watch_Max_Keys pushes keys out.
func (in *Instance) noteLifecycle() {
	st := in.life.Stats
	in.Counters.Watched.Store(int64(in.life.Watch().Len()))
	in.Counters.UsesSuppressed.Store(st.Suppressed)
	in.Counters.WatchExpired.Store(st.Expired)
	in.Counters.WatchEvicted.Store(st.Evicted)
	if st.Evicted > in.evicted {
		if in.evicted == 0 || st.Evicted/1000 > in.evicted/1000 {
			in.log.Warnf("the watch list is full (Watch_Max_Keys %d): %d least recently seen key(s) dropped so far", in.cfg.WatchMaxKeys, st.Evicted)
		}
		in.evicted = st.Evicted
	}
}

// lifecycleChanges are the engine's changes for the store; nil without
// one.
func (in *Instance) lifecycleChanges() *state.Changes {
	if in.store == nil {
		return nil
	}
	changed, deleted, watermark := in.life.Changes()
	ch := &state.Changes{Cases: make(map[string][]byte, len(changed)), Deleted: deleted, Watermark: watermark}
	for _, c := range changed {
		ch.Cases[c.ID()] = c.MarshalMsg(nil)
	}
	return ch
}

// saveLifecycle keeps changes that came without alerts.
func (in *Instance) saveLifecycle() bool {
	if in.store == nil {
		return true
	}
	ch := in.lifecycleChanges()
	if len(ch.Cases) == 0 && len(ch.Deleted) == 0 {
		return true
	}
	if err := in.store.Save(ch); err != nil {
		in.log.Warnf("could not keep the watch list's changes (kept in memory, saved with the next ones): %v", err)
		return false
	}
	in.life.Committed()
	return true
}

// loadLifecycle puts back the watch list the store kept.
func (in *Instance) loadLifecycle() error {
	var cases []*lifecycle.Case
	bad := 0
	watermark, err := in.store.Cases(func(id string, b []byte) error {
		c, err := lifecycle.UnmarshalCase(b)
		if err != nil {
			bad++
			return nil
		}
		cases = append(cases, c)
		return nil
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		in.log.Errorf("%d watched key(s) in the store cannot be read back: dropped", bad)
	}
	in.life.Load(cases, watermark, time.Now())
	if len(cases) > 0 {
		in.log.Infof("watching %d exposed key(s) from an earlier run", len(cases))
	}
	return nil
}
