// Package sqsserver runs a real SQS-compatible server for tests: goaws
// (github.com/Admiral-Piett/goaws v0.4.5, built by `make build/goaws`),
// with its own queues, visibility timeouts, redrive to dead-letter queues
// and SNS topics, in a process of its own on the loopback.
//
// goaws v0.4.5, the only version the Go module proxy serves, speaks SQS's
// Query protocol (form requests, XML answers); the AWS SDK for Go v2 has
// spoken only SQS's JSON protocol since service/sqs v1.29. So a
// translator sits in front: it turns the JSON calls `ship` makes
// (ReceiveMessage, DeleteMessage, ChangeMessageVisibility,
// GetQueueAttributes) into goaws's Query calls and the answers back. It
// keeps no queue state of its own, with one exception: goaws never counts
// receives (ApproximateReceiveCount is always 1), so the translator
// counts them per message, as SQS does.
package sqsserver

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/makebin"
)

// Account is goaws's account id in queue URLs and ARNs.
const Account = "100010001000"

// Server is goaws and its translator.
type Server struct {
	goaws string // http://127.0.0.1:port
	front *httptest.Server

	mu       sync.Mutex
	receives map[string]int // message id -> receives
	calls    map[string]int // JSON action -> calls
}

// Start builds goaws once per test binary and runs it with the given
// default visibility timeout (seconds) and SNS topics, each subscribed by
// a queue of the same name with "-q" appended (SNS envelopes, not raw).
func Start(t testing.TB, visibility int, topics ...string) *Server {
	t.Helper()
	goaws := makebin.Path(t, "build/goaws")
	addr := loopback.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	var conf strings.Builder
	fmt.Fprintf(&conf, "Local:\n  Host: 127.0.0.1\n  Port: %s\n  Region: us-east-1\n  AccountId: %q\n  LogToFile: false\n", port, Account)
	fmt.Fprintf(&conf, "  QueueAttributeDefaults:\n    VisibilityTimeout: %d\n    ReceiveMessageWaitTimeSeconds: 0\n    MaximumMessageSize: 262144\n", visibility)
	conf.WriteString("  Queues: []\n  Topics:\n")
	for _, tp := range topics {
		fmt.Fprintf(&conf, "    - Name: %s\n      Subscriptions:\n        - QueueName: %s-q\n          Raw: false\n", tp, tp)
	}
	if len(topics) == 0 {
		conf.WriteString("    []\n")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goaws, "-config", cfg)
	logf, _ := os.Create(filepath.Join(dir, "goaws.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	s := &Server{goaws: "http://" + addr, receives: map[string]int{}, calls: map[string]int{}}
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("goaws did not listen on %s", addr)
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.front = httptest.NewServer(http.HandlerFunc(s.translate))
	t.Cleanup(s.front.Close)
	return s
}

// QueueURL is the queue's URL at the translator: what `ship` is given.
func (s *Server) QueueURL(name string) string { return s.front.URL + "/" + Account + "/" + name }

// ARN of a queue.
func ARN(name string) string { return "arn:aws:sqs:us-east-1:" + Account + ":" + name }

// TopicARN of a topic.
func TopicARN(name string) string { return "arn:aws:sns:us-east-1:" + Account + ":" + name }

// Calls is how often `ship` called an action (ReceiveMessage, ...).
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Query calls goaws in its own protocol (tests' setup and checks).
func (s *Server) Query(t testing.TB, params url.Values) []byte {
	t.Helper()
	body, status, err := s.query(params)
	if err != nil || status != http.StatusOK {
		t.Fatalf("goaws %s: %v %d %s", params.Get("Action"), err, status, body)
	}
	return body
}

func (s *Server) query(params url.Values) ([]byte, int, error) {
	resp, err := http.PostForm(s.goaws+"/", params)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// CreateQueue makes a queue; maxReceives > 0 gives it a redrive policy to
// the dead-letter queue dlq (which must exist).
func (s *Server) CreateQueue(t testing.TB, name string, visibility int, dlq string, maxReceives int) {
	t.Helper()
	p := url.Values{"Action": {"CreateQueue"}, "QueueName": {name}}
	n := 0
	attr := func(k, v string) {
		n++
		p.Set(fmt.Sprintf("Attribute.%d.Name", n), k)
		p.Set(fmt.Sprintf("Attribute.%d.Value", n), v)
	}
	if visibility > 0 {
		attr("VisibilityTimeout", strconv.Itoa(visibility))
	}
	if maxReceives > 0 {
		attr("RedrivePolicy", fmt.Sprintf(`{"maxReceiveCount":"%d","deadLetterTargetArn":"%s"}`, maxReceives, ARN(dlq)))
	}
	s.Query(t, p)
}

// Send puts a message on a queue.
func (s *Server) Send(t testing.TB, queue, body string) {
	t.Helper()
	s.Query(t, url.Values{"Action": {"SendMessage"}, "QueueUrl": {s.goaws + "/" + Account + "/" + queue}, "MessageBody": {body}})
}

// Publish publishes on an SNS topic (its queue gets the SNS envelope).
func (s *Server) Publish(t testing.TB, topic, message string) {
	t.Helper()
	s.Query(t, url.Values{"Action": {"Publish"}, "TopicArn": {TopicARN(topic)}, "Message": {message}})
}

// Messages is how many messages the queue holds, in flight or not.
func (s *Server) Messages(t testing.TB, queue string) int {
	t.Helper()
	attrs := s.attributes(t, queue)
	n, _ := strconv.Atoi(attrs["ApproximateNumberOfMessages"])
	return n
}

func (s *Server) attributes(t testing.TB, queue string) map[string]string {
	body := s.Query(t, url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {s.goaws + "/" + Account + "/" + queue}, "AttributeName.1": {"All"}})
	var r struct {
		Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
	}
	if err := xml.Unmarshal(body, &r); err != nil {
		t.Fatalf("GetQueueAttributes: %v\n%s", err, body)
	}
	out := map[string]string{}
	for _, a := range r.Attrs {
		out[a.Name] = a.Value
	}
	return out
}

// translate serves one JSON-protocol call.
func (s *Server) translate(w http.ResponseWriter, r *http.Request) {
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		jsonError(w, "InvalidParameterValue", err.Error())
		return
	}
	s.mu.Lock()
	s.calls[action]++
	s.mu.Unlock()
	queueURL, _ := in["QueueUrl"].(string)
	u, err := url.Parse(queueURL)
	if err != nil {
		jsonError(w, "InvalidAddress", err.Error())
		return
	}
	p := url.Values{"Action": {action}, "QueueUrl": {s.goaws + u.Path}}
	str := func(k string) {
		switch v := in[k].(type) {
		case string:
			p.Set(k, v)
		case float64:
			p.Set(k, strconv.Itoa(int(v)))
		}
	}
	switch action {
	case "ReceiveMessage":
		str("MaxNumberOfMessages")
		str("WaitTimeSeconds")
		p.Set("AttributeName.1", "All")
	case "DeleteMessage":
		str("ReceiptHandle")
	case "ChangeMessageVisibility":
		str("ReceiptHandle")
		str("VisibilityTimeout")
	case "GetQueueAttributes":
		p.Set("AttributeName.1", "All")
	default:
		jsonError(w, "UnsupportedOperation", "the translator does not speak "+action)
		return
	}
	body, status, err := s.query(p)
	if err != nil {
		jsonError(w, "ServiceUnavailable", err.Error())
		return
	}
	if status != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		xml.Unmarshal(body, &e)
		code := strings.TrimPrefix(e.Code, "AWS.SimpleQueueService.")
		if code == "NonExistentQueue" {
			code = "QueueDoesNotExist"
		}
		jsonError(w, code, e.Message)
		return
	}
	var out any
	switch action {
	case "ReceiveMessage":
		var r struct {
			Messages []struct {
				MessageId, ReceiptHandle, MD5OfBody, Body string
				Attrs                                     []struct{ Name, Value string } `xml:"Attribute"`
			} `xml:"ReceiveMessageResult>Message"`
		}
		if err := xml.Unmarshal(body, &r); err != nil {
			jsonError(w, "InternalError", err.Error())
			return
		}
		msgs := []map[string]any{}
		for _, m := range r.Messages {
			attrs := map[string]string{}
			for _, a := range m.Attrs {
				attrs[a.Name] = a.Value
			}
			s.mu.Lock()
			s.receives[m.MessageId]++
			attrs["ApproximateReceiveCount"] = strconv.Itoa(s.receives[m.MessageId])
			s.mu.Unlock()
			msgs = append(msgs, map[string]any{"MessageId": m.MessageId, "ReceiptHandle": m.ReceiptHandle,
				"MD5OfBody": m.MD5OfBody, "Body": m.Body, "Attributes": attrs})
		}
		out = map[string]any{"Messages": msgs}
	case "GetQueueAttributes":
		var r struct {
			Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
		}
		xml.Unmarshal(body, &r)
		attrs := map[string]string{}
		for _, a := range r.Attrs {
			attrs[a.Name] = a.Value
		}
		out = map[string]any{"Attributes": attrs}
	default:
		out = map[string]any{}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	json.NewEncoder(w).Encode(out)
}

func jsonError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Query-Error", code+";Sender")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": msg})
}
