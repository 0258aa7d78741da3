package instance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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
	// retryAfterLimit caps a receiver's Retry-After: alerts must not wait
	// a day because a proxy said so.
	retryAfterLimit = 5 * time.Minute
)

func (in *Instance) openStore() error {
	s, rep, err := state.Open(state.Options{Dir: in.cfg.StateDir, MaxQueueBytes: int64(in.cfg.QueueMaxSize),
		DedupMax: in.cfg.DedupCacheSize, DedupTTL: in.cfg.DedupTTL, DeadLetterTTL: in.cfg.DeadLetterTTL})
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
	switch {
	case rep.CompactError != nil:
		in.log.Warnf("could not compact %s (%d bytes), going on with it as it is: %v", s.Path(), rep.Before, rep.CompactError)
	case rep.After < rep.Before:
		in.log.Infof("compacted %s from %d to %d bytes", s.Path(), rep.Before, rep.After)
	}
	if n, _, err := s.DeadLetters(); err == nil && n > 0 {
		in.log.Infof("%d alert(s) the receiver refused for good are kept aside in %s (Dead_Letter_TTL %v)", n, s.Path(), in.cfg.DeadLetterTTL)
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

// enqueue keeps the alerts in the store, all or none (enqueueParts).
func (in *Instance) enqueue(alerts []alert.Alert) Result {
	r, _ := in.enqueueParts(alerts, len(alerts))
	return r
}

// enqueueParts keeps the alerts not known before in the store, with what
// the lifecycle learnt, in one transaction, and wakes the sender: the first
// whole of them all or none, the rest as they fit. The chunk is done once
// they are all on disk; a store that cannot take them, or not all of them,
// makes Fluent Bit retry it (what was stored is then known, and skipped).
// kept says the first whole and the lifecycle's changes were stored. The
// caller holds lifeMu.
func (in *Instance) enqueueParts(alerts []alert.Alert, whole int) (r Result, kept bool) {
	if len(alerts) == 0 {
		if !in.saveLifecycle() {
			in.Counters.Retries.Add(1)
			return Retry, false
		}
		return OK, true
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
		if len(buf)-start > int(in.cfg.QueueMaxSize) && alerts[i].Event != nil {
			// Never storable whole: its event goes, as it would for a
			// receiver too small for it.
			cut := alerts[i].Truncated()
			buf = cut.AppendMsgpack(buf[:start], alert.Native)
		}
		entries[i] = state.Entry{Time: alerts[i].Time, Key: alerts[i].Key, Kind: state.Alert, Body: buf[start:len(buf):len(buf)]}
	}
	res, err := in.store.Enqueue(entries, whole, in.lifecycleChanges())
	if err != nil {
		in.Counters.Retries.Add(1)
		in.log.Warnf("could not store %d alert(s), asking Fluent Bit to retry the chunk: %v", len(alerts), err)
		return Retry, false
	}
	if res.Kept {
		in.life.Committed()
	}
	var queued []sink.Alert
	for i, ok := range res.Taken {
		switch {
		case ok:
			queued = append(queued, sink.Alert{Time: entries[i].Time, Key: entries[i].Key})
		case i < res.Full && !slices.Contains(res.TooBig, i):
			in.Counters.Duplicates.Add(1)
		}
	}
	in.Counters.Queued.Add(int64(len(queued)))
	in.logKeys("stored", queued)
	if len(queued) > 0 || res.Full < len(alerts) {
		in.nudge() // a full queue makes room as the sender delivers: now, not at its next try
	}
	for _, i := range res.TooBig {
		in.log.Errorf("alert %s is %d bytes stored, more than Queue_Max_Size (%d) holds: it cannot be kept until Queue_Max_Size is raised", entries[i].Key, len(entries[i].Body), in.cfg.QueueMaxSize)
	}
	if res.Full == len(alerts) && len(res.TooBig) == 0 {
		return OK, res.Kept
	}
	in.Counters.Retries.Add(1)
	if res.Full < len(alerts) {
		pending, bytes, _ := in.store.Pending()
		hint := "the rest is stored as the sender delivers what waits"
		if in.senderFailing.Load() {
			hint = "the receiver is not taking alerts: bring it back, or raise Queue_Max_Size"
		}
		in.log.Warnf("stored %d of %d alert(s): the state store's queue is full (Queue_Max_Size %d, %d alert(s) of %d bytes waiting), asking Fluent Bit to retry the chunk; %s",
			len(queued), len(alerts), in.cfg.QueueMaxSize, pending, bytes, hint)
	}
	return Retry, res.Kept
}

// nudge wakes the sender.
func (in *Instance) nudge() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// sendQueued delivers the queue in order, in the background, retrying
// with capped exponential backoff and full jitter while it fails (a
// receiver that is down, or a store that cannot record the delivery), and
// no sooner than a receiver's Retry-After.
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
			in.senderFailing.Store(true)
			in.Counters.DeliveryFailures.Add(1)
			wait = retryWait(failures, err)
			if failures == 1 || failures%10 == 0 {
				in.log.Warnf("delivery failed %d time(s), next try in %v: %v", failures, wait.Round(time.Millisecond), err)
			}
		case sent == 0:
			failures = 0
			in.senderFailing.Store(false)
			wait = time.Hour // nothing to do until woken
		default:
			failures = 0
			in.senderFailing.Store(false)
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

// errRefused is a round in which the receiver refused alerts that are not
// set aside yet: they wait for their next try, with backoff.
type errRefused struct {
	n     int
	first string
}

func (e errRefused) Error() string {
	return fmt.Sprintf("the receiver refused %d alert(s), which stay queued until refused %d times while it takes others: %s", e.n, poisonStrikes, e.first)
}

// sendRound delivers the oldest queued alerts, recording each batch the
// sink delivered in its own transaction (a crash between a batch's ack and
// its commit repeats that one batch), and sets aside the alerts refused
// for good; it reports how many it delivered. A delivery the store could
// not record stops the sending: nothing more goes until it is recorded, so
// a broken disk repeats at most that batch (after a restart), never a
// stream of them.
func (in *Instance) sendRound(ctx context.Context) (int, error) {
	if err := in.recordUnrecorded(); err != nil {
		return 0, err
	}
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
	var refused []sink.Refusal
	n, err := sink.Send(ctx, in.sink, batch, sink.Handler{
		Done: func(sent []sink.Alert) error {
			done := make([]state.Entry, len(sent))
			for i, a := range sent {
				done[i] = byKey[a.Key]
			}
			in.strikes.forget(sent)
			return in.record(done)
		},
		Refused: func(r sink.Refusal) error { refused = append(refused, r); return nil },
	})
	aside := in.strikes.refused(refused, n)
	if len(aside) > 0 {
		dead := make([]state.Entry, len(aside))
		reasons := make([]string, len(aside))
		for i, r := range aside {
			dead[i], reasons[i] = byKey[r.Alert.Key], r.Reason
		}
		if derr := in.store.DeadLetter(dead, reasons); derr != nil {
			// They stay queued; their strikes start again.
			return n, errors.Join(err, fmt.Errorf("setting aside %d refused alert(s): %w", len(dead), derr))
		}
		in.Counters.DeadLetter.Add(int64(len(aside)))
		for _, r := range aside {
			in.log.Errorf("set aside alert %s, which the receiver refuses for good: %s (kept in %s for Dead_Letter_TTL %v; the alerts behind it go on)",
				r.Alert.Key, r.Reason, in.store.Path(), in.cfg.DeadLetterTTL)
		}
	}
	if err == nil && len(refused) > len(aside) {
		err = errRefused{len(refused) - len(aside), refused[0].Reason}
	}
	return n, err
}

// record takes delivered entries off the queue. When the store cannot,
// they are kept as unrecorded and the error stops the round.
func (in *Instance) record(done []state.Entry) error {
	if err := in.store.Delivered(done); err != nil {
		err = fmt.Errorf("recording the delivery of %d alert(s), which are not sent again meanwhile: %w", len(done), err)
		if in.unrecorded == nil {
			in.log.Warnf("the receiver took alerts the store cannot record: nothing more is sent until it can (%v)", err)
		}
		in.unrecorded = done
		return err
	}
	in.unrecorded = nil
	sent := make([]sink.Alert, len(done))
	for i, e := range done {
		sent[i] = sink.Alert{Time: e.Time, Key: e.Key}
	}
	in.Counters.Delivered.Add(int64(len(sent)))
	in.observeDelivered(sent)
	in.logKeys("delivered", sent)
	return nil
}

// recordUnrecorded records a delivery the store could not record before;
// until it can, nothing is sent.
func (in *Instance) recordUnrecorded() error {
	if len(in.unrecorded) == 0 {
		return nil
	}
	return in.record(in.unrecorded)
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
			doc = in.fitted(&a, in.appendAlert(nil, &a))
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
	var last error
	for ctx.Err() == nil {
		n, err := in.sendRound(ctx)
		if last = err; err != nil || n == 0 {
			break
		}
	}
	if n, _, err := in.store.Pending(); err == nil && n > 0 {
		why := ""
		if last != nil {
			why = fmt.Sprintf(" (the last try: %v)", last)
		}
		in.log.Warnf("exit: %d alert(s) stay in %s, delivered after the next start%s", n, in.store.Path(), why)
	}
	if len(in.unrecorded) > 0 {
		in.log.Warnf("exit: %d alert(s) were delivered but the store could not record it: they are sent again after the next start", len(in.unrecorded))
	}
}

// retryWait is the wait after failures failed rounds, the last with err:
// the backoff, or longer when the receiver said when to come back.
func retryWait(failures int, err error) time.Duration {
	return max(backoff(failures), min(sink.RetryAfter(err), retryAfterLimit))
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
