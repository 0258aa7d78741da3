package notify

import (
	encjson "encoding/json"
	"reflect"
	"testing"
)

const key = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/02/111122223333_CloudTrail_us-east-1_20261102T1005Z_abc.json.gz"

func TestParse(t *testing.T) {
	s3 := `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"my+trail/x%3Dy/` + key + `"}}},` +
		`{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`
	sns := func(inner string) string {
		b, _ := encjson.Marshal(map[string]string{"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": inner})
		return string(b)
	}
	ct := `{"s3Bucket":"b","s3ObjectKey":["` + key + `","AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/d.json.gz"]}`
	eb := `{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"a b/` + key + `"}}}`
	for _, c := range []struct {
		name, body string
		o          Options
		want       Parsed
	}{
		{"s3", s3, Options{}, Parsed{Shape: "s3", Objects: []Object{{"b", "my trail/x=y/" + key}}, Skipped: map[Skip]int{NotCreated: 1}}},
		{"sns+s3", sns(s3), Options{}, Parsed{Shape: "sns+s3", Objects: []Object{{"b", "my trail/x=y/" + key}}, Skipped: map[Skip]int{NotCreated: 1}}},
		{"test event", `{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`, Options{}, Parsed{Shape: "s3-test", Skipped: map[Skip]int{TestEvent: 1}}},
		{"sns test event", sns(`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`), Options{}, Parsed{Shape: "sns+s3-test", Skipped: map[Skip]int{TestEvent: 1}}},
		{"cloudtrail", sns(ct), Options{}, Parsed{Shape: "cloudtrail-sns", Objects: []Object{{"b", key}}, Skipped: map[Skip]int{Digest: 1}}},
		{"cloudtrail with digests", sns(ct), Options{Digests: true}, Parsed{Shape: "cloudtrail-sns",
			Objects: []Object{{"b", key}, {"b", "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/d.json.gz"}}, Skipped: map[Skip]int{}}},
		{"eventbridge", eb, Options{}, Parsed{Shape: "eventbridge", Objects: []Object{{"b", "a b/" + key}}, Skipped: map[Skip]int{}}},
		{"eventbridge delete", `{"detail-type":"Object Deleted","source":"aws.s3","detail":{}}`, Options{}, Parsed{Shape: "eventbridge", Skipped: map[Skip]int{NotCreated: 1}}},
		{"insight", `{"s3Bucket":"b","s3ObjectKey":["AWSLogs/1/CloudTrail-Insight/r/x.json.gz","dir/"]}`, Options{}, Parsed{Shape: "cloudtrail-sns", Skipped: map[Skip]int{Insight: 1, Directory: 1}}},
	} {
		got, err := Parse([]byte(c.body), c.o)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v %v\nwant %+v", c.name, got, err, c.want)
		}
	}
	for _, bad := range []string{`not json`, `{"hello":"world"}`, `{"Records":[{"eventSource":"aws:kinesis"}]}`, `[1,2]`,
		`{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}`} {
		if _, err := Parse([]byte(bad), Options{}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
