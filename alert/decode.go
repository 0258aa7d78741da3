package alert

import (
	"errors"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Decode reads an alert back from its native msgpack form (AppendMsgpack
// with Native), as the state store keeps undelivered alerts, so they can be
// encoded for whatever sink and format are configured when they are sent.
// The record time and key are not part of the document: the caller passes
// them. Event aliases b.
func Decode(b []byte, t time.Time, key string) (Alert, error) {
	a := Alert{Time: t, Key: key}
	var rule RuleRef
	err := eachEntry(b, func(k string, v []byte) error {
		switch k {
		case "rule":
			return decodeRule(v, &rule)
		case "title":
			return readString(v, &a.Title)
		case "event_id":
			return readString(v, &a.EventID)
		case "event_time":
			return readString(v, &a.EventTime)
		case "account_id":
			return readString(v, &a.AccountID)
		case "region":
			return readString(v, &a.Region)
		case "event_name":
			return readString(v, &a.EventName)
		case "event_source":
			return readString(v, &a.EventSource)
		case "source_ip":
			return readString(v, &a.SourceIP)
		case "user_agent":
			return readString(v, &a.UserAgent)
		case "error_code":
			return readString(v, &a.ErrorCode)
		case "error_message":
			return readString(v, &a.ErrorMessage)
		case "authorization_id":
			return readString(v, &a.AuthorizationID)
		case "response":
			return eachEntry(v, func(k string, v []byte) error {
				if k == "commands" {
					return readStrings(v, &a.Commands)
				}
				return nil
			})
		case "record_shape":
			return readString(v, &a.Shape)
		case "actor":
			return readFields(v, map[string]*string{"type": &a.Actor.Type, "arn": &a.Actor.ARN,
				"user_name": &a.Actor.UserName, "access_key_id": &a.Actor.AccessKeyID})
		case "target":
			return readFields(v, map[string]*string{"type": &a.Target.Type, "name": &a.Target.Name})
		case "policy":
			return readFields(v, map[string]*string{"name": &a.Policy.Name, "arn": &a.Policy.ARN, "version": &a.Policy.Version})
		case "event":
			a.Event = value.Raw(v)
		case "event_truncated":
			t, _, err := msgp.ReadBoolBytes(v)
			a.EventTruncated = t
			return err
		case "key":
			return decodeKey(v, &a)
		case "use":
			return decodeUse(v, &a)
		case "lifecycle":
			return eachEntry(v, func(k string, v []byte) error {
				if k != "seconds_waited" {
					return nil // derived from key and time
				}
				n, _, err := msgp.ReadInt64Bytes(v)
				a.key().Waited = time.Duration(n) * time.Second
				return err
			})
		}
		return nil
	})
	if err != nil {
		return Alert{}, fmt.Errorf("alert: %w", err)
	}
	if rule.ID == "" {
		return Alert{}, errors.New("alert: no rule id")
	}
	// The rule as this version knows it (its description included); a rule
	// this version no longer has keeps what the alert said of it.
	if r := rules.ByID(rule.ID); r != nil {
		a.Rule = ruleRef(r, rule.Severity)
	} else {
		rule.encodeOnce()
		a.Rule = &rule
	}
	return a, nil
}

// key is the alert's key case, made when first needed.
func (a *Alert) key() *rules.Key {
	if a.AccessKey == nil {
		a.AccessKey = &rules.Key{}
	}
	return a.AccessKey
}

func decodeKey(b []byte, a *Alert) error {
	k := a.key()
	var first, exposed, quarantined, retired string
	if err := readFields(b, map[string]*string{"id": &k.ID, "user": &k.User, "account": &k.Account, "exposed_url": &k.ExposedURL,
		"first_seen": &first, "exposed_at": &exposed, "quarantined_at": &quarantined, "retired_at": &retired}); err != nil {
		return err
	}
	for _, f := range []struct {
		s   string
		dst *time.Time
	}{{first, &k.FirstSeen}, {exposed, &k.ExposedAt}, {quarantined, &k.QuarantinedAt}, {retired, &k.RetiredAt}} {
		if f.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.s)
		if err != nil {
			return err
		}
		*f.dst = t
	}
	return nil
}

func decodeUse(b []byte, a *Alert) error {
	u := &rules.Use{}
	a.Use = u
	return eachEntry(b, func(k string, v []byte) error {
		var err error
		switch k {
		case "calls":
			u.Calls, _, err = msgp.ReadInt64Bytes(v)
		case "total_calls":
			u.Total, _, err = msgp.ReadInt64Bytes(v)
		case "window_start":
			var s string
			if err = readString(v, &s); err == nil && s != "" {
				u.WindowStart, err = time.Parse(time.RFC3339Nano, s)
			}
		}
		return err
	})
}

func decodeRule(b []byte, r *RuleRef) error {
	return eachEntry(b, func(k string, v []byte) error {
		switch k {
		case "id":
			return readString(v, &r.ID)
		case "name":
			return readString(v, &r.Name)
		case "severity":
			return readString(v, &r.Severity)
		case "risk_score":
			n, _, err := msgp.ReadIntBytes(v)
			r.RiskScore = n
			return err
		case "runbook":
			return readString(v, &r.Runbook)
		case "mitre":
			n, rest, err := msgp.ReadArrayHeaderBytes(v)
			for i := uint32(0); i < n && err == nil; i++ {
				var t rules.Technique
				end, serr := msgp.Skip(rest)
				if serr != nil {
					return serr
				}
				err = readFields(rest[:len(rest)-len(end)], map[string]*string{"tactic_id": &t.TacticID, "tactic": &t.TacticName,
					"technique_id": &t.TechniqueID, "technique": &t.TechniqueName})
				r.MITRE = append(r.MITRE, t)
				rest = end
			}
			return err
		case "references":
			return readStrings(v, &r.References)
		case "equivalents":
			return readStrings(v, &r.Equivalents)
		}
		return nil
	})
}

// eachEntry calls fn with each key of a msgpack map and its value's bytes.
func eachEntry(b []byte, fn func(k string, v []byte) error) error {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return err
	}
	for range n {
		var k []byte
		if k, rest, err = value.ReadText(rest); err != nil {
			return err
		}
		end, err := msgp.Skip(rest)
		if err != nil {
			return err
		}
		if err := fn(string(k), rest[:len(rest)-len(end)]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		rest = end
	}
	return nil
}

func readString(v []byte, dst *string) error {
	s, _, err := value.ReadText(v)
	*dst = string(s)
	return err
}

func readStrings(v []byte, dst *[]string) error {
	n, rest, err := msgp.ReadArrayHeaderBytes(v)
	for i := uint32(0); i < n && err == nil; i++ {
		var s []byte
		if s, rest, err = value.ReadText(rest); err == nil {
			*dst = append(*dst, string(s))
		}
	}
	return err
}

func readFields(v []byte, fields map[string]*string) error {
	return eachEntry(v, func(k string, v []byte) error {
		if dst, ok := fields[k]; ok {
			return readString(v, dst)
		}
		return nil
	})
}
