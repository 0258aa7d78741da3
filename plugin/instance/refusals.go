package instance

import (
	"sync"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// poisonStrikes is how many refusals of an alert alone, by a receiver
// that takes other alerts, set it aside: a receiver's 400 can be a
// moment's (an index mapping being fixed), so one is not enough.
const poisonStrikes = 3

// maxStruck bounds the alerts whose refusals are remembered: a receiver
// that refuses everything must not grow it without end.
const maxStruck = 10000

// strikes counts the refusals of the alerts a receiver refused for good.
// An alert is set aside only once the receiver has been seen taking other
// alerts in a round where it was refused (or since): a receiver that
// refuses everything (a closed index answers 400 to every item) is down,
// not poisoned, and nothing is set aside for it.
type strikes struct {
	mu    sync.Mutex
	byKey map[string]*strike
	cut   map[string]bool // alerts said to be cut down
}

// firstCut reports whether key is cut down for the first time.
func (s *strikes) firstCut(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut == nil || len(s.cut) > maxStruck {
		s.cut = map[string]bool{}
	}
	first := !s.cut[key]
	s.cut[key] = true
	return first
}

type strike struct {
	n        int
	evidence bool // the receiver took others in a round that refused this one
}

// refused counts the refusals of one round, in which the receiver took
// took alerts, and returns those that are to be set aside now (Final ones
// at once).
func (s *strikes) refused(refusals []sink.Refusal, took int) (aside []sink.Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKey == nil || len(s.byKey) > maxStruck {
		s.byKey = map[string]*strike{}
	}
	for _, r := range refusals {
		st := s.byKey[r.Alert.Key]
		if st == nil {
			st = &strike{}
			s.byKey[r.Alert.Key] = st
		}
		st.n++
		st.evidence = st.evidence || took > 0
		if r.Final || st.evidence && st.n >= poisonStrikes {
			aside = append(aside, r)
			delete(s.byKey, r.Alert.Key)
		}
	}
	return aside
}

// forget drops the count of alerts that went after all.
func (s *strikes) forget(sent []sink.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range sent {
		delete(s.byKey, a.Key)
	}
}

// fitted is the alert encoded for the sink, cut down to fit its receiver
// when it is too big whole: the original event, the bulk of an alert, is
// dropped first (event_truncated). What is still too big the sink refuses.
// It says so once per alert, not at every try of a receiver that is down.
func (in *Instance) fitted(a *alert.Alert, doc []byte) []byte {
	if a.Event == nil || in.sink.Fits(sink.Alert{Time: a.Time, Key: a.Key, Doc: doc}) {
		return doc
	}
	cut := a.Truncated()
	if in.strikes.firstCut(a.Key) {
		in.log.Warnf("alert %s is %d bytes, more than the receiver takes: it is sent without its original event (event_truncated)", a.Key, len(doc))
	}
	return in.appendAlert(nil, &cut)
}

// appendAlert encodes a in the sink's encoding and the configured format.
func (in *Instance) appendAlert(b []byte, a *alert.Alert) []byte {
	if in.sink.Encoding() == sink.Msgpack {
		return a.AppendMsgpack(b, in.format)
	}
	return a.AppendJSON(b, in.format)
}
