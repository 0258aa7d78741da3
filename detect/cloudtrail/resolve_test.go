package cloudtrail

import (
	"reflect"
	"testing"
)

func TestParseFlattened(t *testing.T) {
	cases := map[string]map[string]any{
		"{userName=bob, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}": {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"},
		"{}": {},
		// A policy document holds ", " and "=" of its own.
		`{policyDocument={"Statement": [{"Effect": "Deny", "Action": "a=b, c"}]}, policyName=AWSExposedCredentialPolicy_DO_NOT_REMOVE, userName=x}`: {
			"policyDocument": `{"Statement": [{"Effect": "Deny", "Action": "a=b, c"}]}`, "policyName": "AWSExposedCredentialPolicy_DO_NOT_REMOVE", "userName": "x"},
		"not flattened":  nil,
		"{no equals}":    nil,
		"{a=1, =2}":      {"a": "1, =2"},
		"{a=1, a=2}":     {"a": "1"},
		"{bad key=1}":    nil,
		"{k=v, k2=}":     {"k": "v", "k2": ""},
		"{k={x=1, y=2}}": {"k": "{x=1, y=2}"},
	}
	for in, want := range cases {
		if got := ParseFlattened(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %#v, want %#v", in, got, want)
		}
	}
}

func FuzzParseFlattened(f *testing.F) {
	f.Add("{userName=bob, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}")
	f.Add("{a={b=[c, d=e]}, f=g}")
	f.Fuzz(func(t *testing.T, s string) { ParseFlattened(s) })
}

// FuzzResolveJSON: the JSON-string path (an event as text under "log")
// never panics on any text, and every event it finds carries its source.
// (An event whose eventName is "" is found, and matches no rule.)
func FuzzResolveJSON(f *testing.F) {
	f.Add(`{"eventName":"AttachUserPolicy","requestParameters":{"userName":"a","policyArn":"arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}}`)
	f.Add(`{"Records":[{"eventName":"PutUserPolicy","requestParameters":"{\"policyName\":\"AWSExposedCredentialPolicy_DO_NOT_REMOVE\"}"}]}`)
	f.Add(`{"detail":{"eventName":"x"},"event.action":"y"}`)
	f.Add(`{"log": "{\"eventName\": 1}"}`)
	r := Resolver{EventKeys: []string{"log"}}
	f.Fuzz(func(t *testing.T, s string) {
		r.Resolve(map[string]any{"log": s}, func(e *Event) {
			if e.Raw == nil {
				t.Fatalf("event without its source from %q", s)
			}
		})
	})
}
