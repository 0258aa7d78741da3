package ship

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/ship/notify"
)

// SQSAPI is the part of the SQS client `ship` uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// queue is the SQS mode: competing consumers of one queue, each message
// deleted only once every event of its objects was acknowledged.
type queue struct {
	r   *runner
	api SQSAPI
	s3  source.S3API
	url string
	// vt is the visibility timeout; maxReceives the redrive policy's
	// maxReceiveCount (0: the queue has none).
	vt          time.Duration
	maxReceives int
}

// QueueURL reads what follows sqs://: a queue URL, with or without its
// https:// scheme.
func QueueURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return "", fmt.Errorf("sqs://%s: not a queue URL (sqs://https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)", strings.TrimPrefix(s, "https://"))
	}
	return s, nil
}

func (r *runner) newSQS(ctx context.Context, rawURL string) (*queue, error) {
	u, err := QueueURL(rawURL)
	if err != nil {
		return nil, err
	}
	api, err := r.o.SQS(ctx, u)
	if err != nil {
		return nil, err
	}
	s3api, err := r.o.S3(ctx)
	if err != nil {
		return nil, err
	}
	q := &queue{r: r, api: api, s3: s3api, url: u, vt: r.o.VisibilityTimeout}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := api.GetQueueAttributes(actx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(u),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout, types.QueueAttributeNameRedrivePolicy}})
	switch {
	case err != nil && q.vt == 0:
		return nil, fmt.Errorf("%s: reading the queue's visibility timeout: %v (or give --visibility-timeout)", u, err)
	case err != nil:
		r.o.Log.Warnf("%s: reading the queue's redrive policy: %v", u, err)
	default:
		if q.vt == 0 {
			s, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
			q.vt = time.Duration(s) * time.Second
		}
		q.maxReceives = maxReceiveCount(out.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
	}
	if q.vt < time.Second {
		return nil, fmt.Errorf("%s: visibility timeout %v: at least 1s (set the queue's, or --visibility-timeout)", u, q.vt)
	}
	redrive := fmt.Sprintf("a message that keeps failing goes to the dead-letter queue after %d receives", q.maxReceives)
	if q.maxReceives == 0 {
		redrive = "the queue has no redrive policy: a message that keeps failing comes back until the queue's retention period ends; give it a dead-letter queue"
	}
	r.o.Log.Infof("receiving from %s: visibility timeout %v, extended every %v while a message is in flight; %s", u, q.vt, q.extendEvery(), redrive)
	return q, nil
}

// maxReceiveCount reads a RedrivePolicy attribute (the count is a number
// or a string, depending on who set it).
func maxReceiveCount(policy string) int {
	var p struct {
		MaxReceiveCount json.Number `json:"maxReceiveCount"`
	}
	if policy == "" || json.Unmarshal([]byte(policy), &p) != nil {
		return 0
	}
	n, _ := strconv.Atoi(p.MaxReceiveCount.String())
	return n
}

func (q *queue) extendEvery() time.Duration { return max(q.vt/2, 500*time.Millisecond) }

// receive long-polls while there is room for more messages in flight:
// when Fluent Bit stops acknowledging, messages stop finishing, the room
// runs out, and receiving stops.
func (q *queue) receive(ctx context.Context) error {
	o := q.r.o
	slots := make(chan struct{}, o.MaxMessages)
	backoff := time.Second
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < 10 {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		in := &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.url), MaxNumberOfMessages: int32(n),
			WaitTimeSeconds:             int32(o.WaitTime / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}}
		if o.VisibilityTimeout > 0 {
			in.VisibilityTimeout = int32(o.VisibilityTimeout / time.Second)
		}
		out, err := q.api.ReceiveMessage(ctx, in)
		got := 0
		if err == nil {
			got = len(out.Messages)
		}
		for range n - got {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			q.r.p.warn("%s: receiving: %v; again in %v", q.url, err, backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		for _, m := range out.Messages {
			q.handle(ctx, m, slots)
		}
	}
	return nil
}

// handle starts one message: its objects go to the readers, and a
// finisher extends its visibility until they are all acknowledged, then
// deletes it.
func (q *queue) handle(ctx context.Context, m types.Message, slots chan struct{}) {
	c := q.r.c
	c.MessagesReceived.Add(1)
	c.MessagesInFlight.Add(1)
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	parsed, err := notify.Parse([]byte(aws.ToString(m.Body)), q.r.o.Include)
	for why, n := range parsed.Skipped {
		c.skip(string(why), int64(n))
	}
	var j *job
	if err == nil {
		j = q.r.p.newJob(len(parsed.Objects))
		objs := make([]*object, len(parsed.Objects))
		for i, ob := range parsed.Objects {
			objs[i] = q.r.s3Object(q.s3, j, ob.Bucket, ob.Key)
		}
		q.r.producers.Go(func() {
			for i, ob := range objs {
				if q.r.p.submit(ctx, ob) != nil {
					// The rest never reach a reader: their share of the job
					// goes with them.
					j.release(len(objs) - i - 1)
					return
				}
			}
		})
		if len(parsed.Objects) == 0 {
			c.MessagesSkipped.Add(1)
		}
	}
	q.r.finishers.Go(func() {
		defer func() {
			c.MessagesInFlight.Add(-1)
			<-slots
		}()
		if err != nil {
			q.failed(m, receives, fmt.Sprintf("not understood (%v)", err))
			return
		}
		q.finish(m, j, receives)
	})
}

// finish waits for the message's job, extending its visibility at half
// the timeout, then deletes it (done), leaves it (failed: it comes back
// after its visibility timeout, or goes to the dead-letter queue), or at
// shutdown gives it back at once.
func (q *queue) finish(m types.Message, j *job, receives int) {
	r := q.r
	tick := time.NewTicker(q.extendEvery())
	defer tick.Stop()
	for {
		select {
		case <-j.done:
			switch {
			case j.ok():
				q.delete(m)
			case r.readCtx.Err() != nil:
				q.giveBack(m)
			default:
				q.failed(m, receives, "an object could not be shipped whole")
			}
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(r.hardCtx, q.vt/2)
			_, err := q.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q.url),
				ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(q.vt / time.Second)})
			cancel()
			if err != nil {
				r.p.warn("%s: extending the visibility of message %s: %v (it may be received again: its events would then be sent twice)", q.url, aws.ToString(m.MessageId), err)
			} else {
				r.c.VisibilityExtensions.Add(1)
			}
		case <-r.sendCtx.Done():
			q.giveBack(m)
			return
		}
	}
}

func (q *queue) delete(m types.Message) {
	r := q.r
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(r.hardCtx, 10*time.Second)
		_, err := q.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle})
		cancel()
		if err == nil {
			r.c.MessagesDeleted.Add(1)
			return
		}
		if attempt == 2 || r.hardCtx.Err() != nil {
			r.o.Log.Warnf("%s: deleting message %s: %v (its events were delivered; it will be received again and they sent twice)", q.url, aws.ToString(m.MessageId), err)
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
}

// failed leaves the message for the queue: it is received again after
// its visibility timeout, and the redrive policy moves it to the
// dead-letter queue after maxReceiveCount receives.
func (q *queue) failed(m types.Message, receives int, why string) {
	r := q.r
	r.c.MessagesFailed.Add(1)
	id := aws.ToString(m.MessageId)
	if q.maxReceives > 0 && receives >= q.maxReceives {
		r.c.MessagesRedrive.Add(1)
		r.o.Log.Errorf("%s: message %s: %s, on receive %d of %d: left for the redrive policy (the dead-letter queue)", q.url, id, why, receives, q.maxReceives)
		return
	}
	r.o.Log.Errorf("%s: message %s: %s (receive %d): not deleted, it comes back after the visibility timeout", q.url, id, why, receives)
}

// giveBack makes an unfinished message visible again at once, for another
// shipper (or this one, restarted) to take.
func (q *queue) giveBack(m types.Message) {
	r := q.r
	ctx, cancel := context.WithTimeout(r.hardCtx, 2*time.Second)
	defer cancel()
	_, err := q.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q.url),
		ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
	if err == nil {
		r.c.MessagesReleased.Add(1)
	}
}
