package instance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
)

const (
	// One round of the sender reads at most this much of the queue; the
	// sink cuts it into batches its receiver takes.
	sendEntries = 1000
	sendBytes   = 16 << 20

	backoffBase  = 500 * time.Millisecond
	backoffLimit = 60 * time.Second
)

func (in *Instance) openStore() error {
	s, rep, err := state.Open(state.Options{Dir: in.cfg.StateDir, MaxQueueBytes: int64(in.cfg.QueueMaxSize),
		DedupMax: in.cfg.DedupCacheSize, DedupTTL: in.cfg.DedupTTL})
	if err != nil {
		return err
	}
	in.store = s
	if err := in.loadLifecycle(); err != nil {
		s.Close()
		return err
	}
	if rep.MovedAside != "" {
		in.log.Errorf("state store %s was unreadable (%s): moved it to %s and started a fresh one", s.Path(), rep.Reason, rep.MovedAside)
	}
	if rep.Migrated > 0 {
		in.log.Infof("took over %d undelivered alert(s) from the spool of an earlier version in %s", rep.Migrated, in.cfg.StateDir)
	}
	if n, _, err := s.Pending(); err == nil && n > 0 {
		in.log.Infof("state store holds %d undelivered alert(s) from an earlier run: delivering them", n)
	}
	in.goSafe("alert sender", in.sendQueued)
	return nil
}

// enqueue keeps the alerts not known before in the store, with what the
// lifecycle learnt, in one transaction, and wakes the sender. The chunk is
// done once they are on disk; only a store that cannot take them makes
// Fluent Bit retry it. The caller holds lifeMu.
func (in *Instance) enqueue(alerts []alert.Alert) Result {
	if len(alerts) == 0 {
		if !in.saveLifecycle() {
			in.Counters.Retries.Add(1)
			return Retry
		}
		return OK
	}
	size := 0
	for i := range alerts {
		size += alerts[i].SizeHint()
	}
	buf := make([]byte, 0, size)
	entries := make([]state.Entry, len(alerts))
	for i := range alerts {
		start := len(buf)
		buf = alerts[i].AppendMsgpack(buf, alert.Native)
		entries[i] = state.Entry{Time: alerts[i].Time, Key: alerts[i].Key, Kind: state.Alert, Body: buf[start:len(buf):len(buf)]}
	}
	taken, err := in.store.Enqueue(entries, in.lifecycleChanges())
	if err != nil {
		in.Counters.Retries.Add(1)
		hint := ""
		if errors.Is(err, state.ErrFull) {
			hint = " (raise Queue_Max_Size, or bring the receiver back)"
		}
		in.log.Warnf("could not store %d alert(s), asking Fluent Bit to retry the chunk: %v%s", len(alerts), err, hint)
		return Retry
	}
	var queued []sink.Alert
	for i, ok := range taken {
		if !ok {
			in.Counters.Duplicates.Add(1)
			continue
		}
		queued = append(queued, sink.Alert{Time: entries[i].Time, Key: entries[i].Key})
	}
	in.life.Committed()
	in.Counters.Queued.Add(int64(len(queued)))
	in.logKeys("stored", queued)
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return OK
}

// sendQueued delivers the queue in order, in the background, retrying
// with capped exponential backoff and full jitter while it fails (a
// receiver that is down, or a store that cannot record the delivery).
func (in *Instance) sendQueued(ctx context.Context) {
	failures := 0
	for {
		select {
		case <-in.stop:
			return
		default:
		}
		wait := time.Duration(0)
		switch sent, err := in.sendRound(ctx); {
		case err != nil:
			failures++
			in.Counters.DeliveryFailures.Add(1)
			wait = backoff(failures)
			if failures == 1 || failures%10 == 0 {
				in.log.Warnf("delivery failed %d time(s), next try in %v: %v", failures, wait.Round(time.Millisecond), err)
			}
		case sent == 0:
			failures = 0
			wait = time.Hour // nothing to do until woken
		default:
			failures = 0
		}
		if wait == 0 {
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-in.stop:
			timer.Stop()
			return
		case <-in.wake:
			timer.Stop()
			if failures > 0 {
				// New alerts are no reason to hammer a receiver that is down.
				select {
				case <-in.stop:
					return
				case <-time.After(min(wait, time.Second)):
				}
			}
		case <-timer.C:
		}
	}
}

// sendRound delivers the oldest queued alerts, recording each batch the
// sink delivered in its own transaction (a crash between a batch's ack and
// its commit repeats that one batch); it reports how many it delivered.
func (in *Instance) sendRound(ctx context.Context) (int, error) {
	entries, err := in.store.Head(sendEntries, sendBytes)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	batch, bad := in.encodeEntries(entries)
	if len(bad) > 0 {
		// An entry nothing can read would hold up every later alert.
		in.Counters.EncodeErrors.Add(int64(len(bad)))
		in.log.Errorf("dropping %d stored alert(s) that cannot be read back: %v", len(bad), bad[0].Key)
		if err := in.store.Delivered(bad); err != nil {
			return 0, err
		}
	}
	byKey := map[string]state.Entry{}
	for _, e := range entries {
		byKey[e.Key] = e
	}
	return sink.Send(ctx, in.sink, batch, func(sent []sink.Alert) error {
		done := make([]state.Entry, len(sent))
		for i, a := range sent {
			done[i] = byKey[a.Key]
		}
		if err := in.store.Delivered(done); err != nil {
			// Delivered but not recorded: sent again later (at least once).
			return fmt.Errorf("recording the delivery: %w", err)
		}
		in.Counters.Delivered.Add(int64(len(sent)))
		in.observeDelivered(sent)
		in.logKeys("delivered", sent)
		return nil
	})
}

// encodeEntries turns stored entries into the sink's encoding and the
// format configured now (which may differ from the one of the day they
// were stored). Documents taken over from an old spool are read as
// alerts when they are native ones, and else sent as they are.
func (in *Instance) encodeEntries(entries []state.Entry) (out []sink.Alert, bad []state.Entry) {
	asMsgpack := in.sink.Encoding() == sink.Msgpack
	for _, e := range entries {
		doc := e.Body
		if e.Kind == state.LegacyJSON {
			v, err := value.FromJSON(doc)
			if err != nil {
				bad = append(bad, e)
				continue
			}
			doc = value.AppendMsgpack(nil, v)
		}
		if a, err := alert.Decode(doc, e.Time, e.Key); err == nil {
			a.SetRunbookBase(in.cfg.RunbookBaseURL) // the page configured now
			if asMsgpack {
				doc = a.AppendMsgpack(nil, in.format)
			} else {
				doc = a.AppendJSON(nil, in.format)
			}
		} else if e.Kind == state.Alert {
			bad = append(bad, e)
			continue
		} else if !asMsgpack {
			js, err := value.AppendJSON(nil, doc)
			if err != nil {
				bad = append(bad, e)
				continue
			}
			doc = js
		}
		out = append(out, sink.Alert{Time: e.Time, Key: e.Key, Doc: doc})
	}
	return out, bad
}

// drain delivers what it can of the queue before deadline.
func (in *Instance) drain(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for ctx.Err() == nil {
		n, err := in.sendRound(ctx)
		if err != nil || n == 0 {
			break
		}
	}
	if n, _, err := in.store.Pending(); err == nil && n > 0 {
		in.log.Warnf("exit: %d alert(s) stay in %s, delivered after the next start", n, in.store.Path())
	}
}

// backoff is full jitter over a capped exponential: base * 2^(n-1), at
// most backoffLimit, then a uniform pick below it.
func backoff(failures int) time.Duration {
	ceiling := backoffLimit
	if failures < 20 {
		ceiling = min(backoffLimit, backoffBase<<(failures-1))
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + time.Millisecond
}
