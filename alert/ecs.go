package alert

import (
	"net"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Format is the alert schema: the plugin's own, or Elastic Common Schema.
type Format int

const (
	Native Format = iota
	ECS
)

// ECSVersion is the ECS release the ecs format is checked against.
const ECSVersion = "9.4.0"

// ecsFields writes the alert as an ECS document that indexes into an ECS
// index with no ingest pipeline. What ECS has no field for goes under
// aws.cloudtrail.* (as Elastic's AWS integration names it) or the plugin's
// own cloudtrail_quarantine.* namespace.
func (a *Alert) ecsFields(e encoder) {
	failed := a.ErrorCode != ""
	n := 12
	if failed {
		n++
	}
	e.begin(n)
	e.str("@timestamp", a.Time.UTC().Format(time.RFC3339Nano))
	e.str("message", a.Title)
	e.key("ecs")
	e.begin(1)
	e.str("version", ECSVersion)
	e.end()

	var original []byte
	if a.Event != nil {
		original = value.ToJSON(a.Event)
	}
	e.key("event")
	fields := 11
	if original != nil {
		fields++
	}
	e.begin(fields)
	e.str("kind", "alert")
	e.key("category")
	e.array(1)
	e.elemStr("iam")
	e.endArray()
	e.key("type")
	e.array(1)
	e.elemStr("change")
	e.endArray()
	e.str("action", a.EventName)
	e.str("outcome", map[bool]string{false: "success", true: "failure"}[failed])
	e.int("severity", severities[a.Rule.Severity])
	e.int("risk_score", a.Rule.RiskScore)
	e.str("provider", a.EventSource)
	e.str("module", "aws")
	e.str("dataset", "aws.cloudtrail")
	e.str("id", a.EventID)
	if original != nil {
		e.str("original", string(original))
	}
	e.end()

	e.key("rule")
	e.begin(6)
	e.str("id", a.Rule.ID)
	e.str("name", a.Rule.Name)
	e.str("description", a.Rule.Description)
	e.str("reference", a.Rule.References[0])
	e.str("ruleset", "cloudtrail_quarantine")
	e.str("version", "1")
	e.end()

	a.ecsThreat(e)

	e.key("user")
	users := 1
	if a.Actor.ARN != "" {
		users++
	}
	if a.Actor.UserName != "" {
		users++
	}
	e.begin(users)
	if a.Actor.UserName != "" {
		e.str("name", a.Actor.UserName)
	}
	if a.Actor.ARN != "" {
		e.str("id", a.Actor.ARN)
	}
	e.key("target")
	e.begin(1)
	e.str("name", a.Target.Name)
	e.end()
	e.end()

	e.key("cloud")
	e.begin(3)
	e.str("provider", "aws")
	e.key("account")
	e.begin(1)
	e.str("id", a.AccountID)
	e.end()
	e.str("region", a.Region)
	e.end()

	// source.ip must be an IP; CloudTrail also writes "AWS Internal" and
	// service names there, which ECS keeps in source.address.
	e.key("source")
	e.begin(1)
	if net.ParseIP(a.SourceIP) != nil {
		e.str("ip", a.SourceIP)
	} else {
		e.str("address", a.SourceIP)
	}
	e.end()

	e.key("user_agent")
	e.begin(1)
	e.str("original", a.UserAgent)
	e.end()

	if failed {
		e.key("error")
		// The authorization id identifies the denial's evaluation (IAM's
		// GetRequestAuthorizationDetails): ECS's id of the error.
		if a.AuthorizationID != "" {
			e.begin(3)
			e.str("id", a.AuthorizationID)
		} else {
			e.begin(2)
		}
		e.str("code", a.ErrorCode)
		e.str("message", a.ErrorMessage)
		e.end()
	}

	e.key("aws")
	e.begin(1)
	e.key("cloudtrail")
	e.begin(2)
	e.str("event_type", "AwsApiCall")
	e.key("user_identity")
	e.begin(2)
	e.str("type", a.Actor.Type)
	e.str("access_key_id", a.Actor.AccessKeyID)
	e.end()
	e.end()
	e.end()

	// What ECS has no field for: the plugin's own namespace.
	e.key("cloudtrail_quarantine")
	own := 3
	for _, present := range []bool{a.Target.Type != "", a.Policy.Name != "", a.AccessKey != nil, a.Use != nil, len(a.lifecycle()) > 0, a.EventTruncated} {
		if present {
			own++
		}
	}
	e.begin(own)
	a.targetAndPolicy(e)
	a.lifecycleFields(e)
	// ECS has no field for what to do: the runbook and the commands.
	e.key("response")
	if len(a.Commands) > 0 {
		e.begin(2)
		e.str("runbook", a.Rule.Runbook)
		e.strs("commands", a.Commands)
	} else {
		e.begin(1)
		e.str("runbook", a.Rule.Runbook)
	}
	e.end()
	e.str("record_shape", a.Shape)
	e.str("schema_version", SchemaVersion)
	a.truncation(e)
	e.end()

	e.end()
}

// ecsThreat writes threat.* with one array entry per ATT&CK mapping.
func (a *Alert) ecsThreat(e encoder) {
	m := a.Rule.MITRE
	list := func(k string, f func(rules.Technique) string) {
		e.key(k)
		e.array(len(m))
		for _, t := range m {
			e.elemStr(f(t))
		}
		e.endArray()
	}
	e.key("threat")
	e.begin(3)
	e.str("framework", "MITRE ATT&CK")
	e.key("tactic")
	e.begin(3)
	list("id", func(t rules.Technique) string { return t.TacticID })
	list("name", func(t rules.Technique) string { return t.TacticName })
	list("reference", func(t rules.Technique) string { return "https://attack.mitre.org/tactics/" + t.TacticID + "/" })
	e.end()
	e.key("technique")
	e.begin(3)
	list("id", func(t rules.Technique) string { return t.TechniqueID })
	list("name", func(t rules.Technique) string { return t.TechniqueName })
	list("reference", func(t rules.Technique) string {
		return "https://attack.mitre.org/techniques/" + strings.ReplaceAll(t.TechniqueID, ".", "/") + "/"
	})
	e.end()
	e.end()
}
