package channel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// Payload is the JSON of kinds webhook and mqtt: the alarm, where it was
// sent from and why, and the idempotency key.
type Payload struct {
	// ID is the idempotency key: the same for every attempt of one alarm
	// over one channel, also across restarts.
	ID       string    `json:"id"`
	Gateway  string    `json:"gateway"`
	Channel  string    `json:"channel"`
	Rule     string    `json:"rule"` // severity | not_accepted | upstream_failing
	Key      string    `json:"key"`  // the mail's spool key
	Source   string    `json:"source,omitempty"`
	Severity string    `json:"severity,omitempty"`
	Subject  string    `json:"subject"`
	Text     string    `json:"text"`
	Queued   time.Time `json:"queued"`
	Attempt  int       `json:"attempt"`
}

func (d *Dispatcher) payload(c *Channel, r *Record) Payload {
	a := &r.Alarm
	return Payload{ID: r.IdempotencyKey, Gateway: d.o.Hostname, Channel: c.Name, Rule: r.Rule, Key: a.Key,
		Source: a.Source, Severity: a.Severity, Subject: a.Subject, Text: a.Text, Queued: a.Queued, Attempt: r.Attempts}
}

// send makes one attempt; it returns the HTTP status (0 for MQTT).
func (d *Dispatcher) send(ctx context.Context, c *Channel, client *http.Client, r *Record) (int, error) {
	if c.Kind == MQTT {
		b, _ := json.Marshal(d.payload(c, r))
		return 0, c.Publish(ctx, c.Topic, b)
	}
	req, err := d.request(ctx, c, r)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	req.Header.Set("Idempotency-Key", r.IdempotencyKey)
	req.Header.Set("User-Agent", "plcmail")
	switch {
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case c.Username != "":
		req.SetBasicAuth(c.Username, c.Password)
	}
	resp, err := client.Do(req)
	if err != nil {
		// A Slack or Teams webhook URL is the secret itself: the error,
		// which is logged and shown by status, names only the host.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			return 0, fmt.Errorf("%s to %s: %w", ue.Op, req.URL.Host, ue.Err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return code, nil
	case code == http.StatusRequestTimeout || code == http.StatusConflict || code == http.StatusTooEarly ||
		code == http.StatusTooManyRequests || code >= 500:
		return code, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	default:
		// 4xx: a wrong URL, token or payload does not get better by
		// asking again.
		return code, fmt.Errorf("%w: %s: %s", ErrPermanent, resp.Status, bytes.TrimSpace(body))
	}
}

// request builds the HTTP request of kinds webhook, ntfy, teams, slack.
func (d *Dispatcher) request(ctx context.Context, c *Channel, r *Record) (*http.Request, error) {
	a := &r.Alarm
	var body []byte
	ctype := "application/json"
	switch c.Kind {
	case Webhook:
		body, _ = json.Marshal(d.payload(c, r))
	case Ntfy:
		// https://docs.ntfy.sh/publish/: the body is the message, the
		// rest goes in headers; non-ASCII header values RFC 2047-encoded,
		// which ntfy decodes.
		body, ctype = []byte(a.Text), "text/plain; charset=utf-8"
	case Teams:
		body, _ = json.Marshal(teamsCard(a))
	case Slack:
		body, _ = json.Marshal(map[string]string{"text": "*" + a.Subject + "*\n" + a.Text})
	default:
		return nil, fmt.Errorf("unknown kind %q", c.Kind)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	if c.Kind == Ntfy {
		req.Header.Set("Title", mime.QEncoding.Encode("utf-8", a.Subject))
		req.Header.Set("Priority", ntfyPriority(a.Severity))
		tags := "plcmail"
		if a.Severity != "" {
			tags += "," + a.Severity
		}
		req.Header.Set("Tags", tags)
	}
	return req, nil
}

// ntfyPriority maps a severity to ntfy's 1 (min) .. 5 (max, urgent).
func ntfyPriority(sev string) string {
	switch sev {
	case "critical":
		return "5"
	case "alarm":
		return "4"
	case "info":
		return "2"
	}
	return "3"
}

// teamsCard is a message with an Adaptive Card, what Teams' incoming
// webhooks (Workflows "post to a channel when a webhook request is
// received") take.
func teamsCard(a *Alarm) any {
	type block struct {
		Type   string `json:"type"`
		Text   string `json:"text"`
		Weight string `json:"weight,omitempty"`
		Size   string `json:"size,omitempty"`
		Wrap   bool   `json:"wrap"`
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []block{
			{Type: "TextBlock", Text: a.Subject, Weight: "Bolder", Size: "Medium", Wrap: true},
			{Type: "TextBlock", Text: a.Text, Wrap: true},
		},
	}
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content":     card,
		}},
	}
}
