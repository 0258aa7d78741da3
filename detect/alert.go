package detect

import (
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/value"
)

// Alert is one rule firing on one CloudTrail event. Its JSON form is the
// alert schema documented in the README.
type Alert struct {
	Rule         RuleRef      `json:"rule"`
	Title        string       `json:"title"`
	EventID      string       `json:"event_id"`
	EventTime    string       `json:"event_time"`
	AccountID    string       `json:"account_id"`
	Region       string       `json:"region"`
	EventName    string       `json:"event_name"`
	EventSource  string       `json:"event_source"`
	SourceIP     string       `json:"source_ip"`
	UserAgent    string       `json:"user_agent"`
	Actor        Actor        `json:"actor"`
	Target       rules.Target `json:"target"`
	Policy       rules.Policy `json:"policy"`
	ErrorCode    string       `json:"error_code,omitempty"`
	ErrorMessage string       `json:"error_message,omitempty"`
	Shape        string       `json:"record_shape"`
	Event        any          `json:"event,omitempty"`

	// Time is the alert record's timestamp: the event's eventTime, or the
	// record's time when eventTime is missing or unreadable.
	Time time.Time `json:"-"`
	// Key identifies the alert for deduplication: rule id and event id.
	Key string `json:"-"`
}

// RuleRef is the rule metadata carried in every alert.
type RuleRef struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Severity    string            `json:"severity"`
	RiskScore   int               `json:"risk_score"`
	MITRE       []rules.Technique `json:"mitre"`
	Runbook     string            `json:"runbook"`
	References  []string          `json:"references"`
	Equivalents []string          `json:"equivalents"`
}

// Actor is who made the call.
type Actor struct {
	Type        string `json:"type"`
	ARN         string `json:"arn"`
	UserName    string `json:"user_name"`
	AccessKeyID string `json:"access_key_id"`
}

func ruleRef(r *rules.Rule) RuleRef {
	eq := r.Equivalents
	if eq == nil {
		eq = []string{}
	}
	return RuleRef{
		ID: r.ID, Name: r.Name, Severity: r.Severity, RiskScore: r.RiskScore,
		MITRE: r.MITRE, Runbook: r.Runbook, References: r.References, Equivalents: eq,
	}
}

// JSON encodes the alert as one compact JSON object.
func (a *Alert) JSON() ([]byte, error) { return value.ToJSON(a) }

// Msgpack encodes the alert as one msgpack map with the same fields as its
// JSON form: it goes through the JSON so the two can never drift apart.
func (a *Alert) Msgpack(js []byte) ([]byte, error) {
	v, err := value.FromJSON(js)
	if err != nil {
		return nil, err
	}
	return value.AppendMsgpack(nil, v)
}
