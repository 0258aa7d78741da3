package instance

import (
	"math/rand/v2"
	"time"
)

const (
	spoolBatch   = 500 // alerts per delivery from the spool
	backoffBase  = 500 * time.Millisecond
	backoffLimit = 60 * time.Second
	// drainTime bounds how long exit tries to empty the spool; Fluent Bit
	// gives outputs a few seconds (grace) before it stops waiting.
	drainTime = 3 * time.Second
)

// sendSpooled delivers the spool in order, in the background, retrying
// with capped exponential backoff and full jitter while the sink fails.
func (in *Instance) sendSpooled() {
	defer in.background.Done()
	failures := 0
	for {
		wait := time.Duration(0)
		switch sent, err := in.sendSpoolBatch(); {
		case err != nil:
			failures++
			wait = backoff(failures)
			if failures == 1 || failures%10 == 0 {
				in.log.Warnf("spool: delivery failed %d time(s), next try in %v: %v", failures, wait.Round(time.Millisecond), err)
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
		case <-in.spoolWake:
			timer.Stop()
			if failures > 0 {
				// New alerts are no reason to hammer a receiver that is down.
				time.Sleep(min(wait, time.Second))
			}
		case <-timer.C:
		}
	}
}

// sendSpoolBatch delivers the oldest spooled alerts and reports how many.
func (in *Instance) sendSpoolBatch() (int, error) {
	in.deliverMu.Lock()
	defer in.deliverMu.Unlock()
	batch, next, err := in.spool.Next(spoolBatch)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	if err := in.sink.Deliver(batch); err != nil {
		return 0, err
	}
	if err := in.spool.Delivered(next); err != nil {
		// Delivered but not recorded: sent again after a restart.
		in.log.Errorf("spool: cannot record delivery: %v", err)
	}
	in.Counters.SpoolDelivered.Add(int64(len(batch)))
	in.log.Infof("spool: delivered %d alert(s)", len(batch))
	return len(batch), nil
}

// drainSpool tries to empty the spool until deadline.
func (in *Instance) drainSpool(deadline time.Time) {
	for in.spool.Pending() > 0 && time.Now().Before(deadline) {
		if _, err := in.sendSpoolBatch(); err != nil {
			time.Sleep(min(time.Until(deadline), 200*time.Millisecond))
		}
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
