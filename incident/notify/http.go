package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// hook posts to a Slack incoming webhook, a Discord webhook or a generic JSON webhook.
type hook struct {
	kind   string
	url    string
	client *http.Client
}

var _ transport = (*hook)(nil)

// Payload limits: Discord refuses content over 2,000 characters; Slack truncates text
// past 40,000 and advises less.
const (
	discordMax = 2000
	slackMax   = 39000
	summaryMax = 1024 // PagerDuty's payload.summary
)

// WebhookPayload is what a generic webhook receives: the message and what it is about.
type WebhookPayload struct {
	Text     string    `json:"text"` // subject and body, as a chat would show them
	Subject  string    `json:"subject"`
	Body     string    `json:"body"`
	Kind     string    `json:"kind"` // update, escalation, test
	Incident string    `json:"incident,omitempty"`
	Drill    bool      `json:"drill"`
	Action   string    `json:"action"` // trigger, acknowledge, resolve
	Severity string    `json:"severity"`
	Source   string    `json:"source"`
	Sent     time.Time `json:"sent"`
}

type discordPayload struct {
	Content string `json:"content"`
	// No @everyone or role pings from a status text, whatever it says.
	AllowedMentions struct {
		Parse []string `json:"parse"`
	} `json:"allowed_mentions"`
}

func (h *hook) deliver(ctx context.Context, m Message) error {
	var body any
	switch h.kind {
	case TypeSlack:
		body = map[string]string{"text": truncate(m.chat(), slackMax)}
	case TypeDiscord:
		p := discordPayload{Content: truncate(m.chat(), discordMax)}
		p.AllowedMentions.Parse = []string{}
		body = p
	default:
		body = WebhookPayload{Text: m.chat(), Subject: m.Subject, Body: m.Text, Kind: m.Kind, Incident: m.Incident, Drill: m.Drill,
			Action: m.Action, Severity: m.Severity, Source: m.Source, Sent: time.Now().UTC()}
	}
	return postJSON(ctx, h.client, h.url, body)
}

// pagerDuty sends PagerDuty Events API v2 events.
type pagerDuty struct {
	url    string
	key    string
	client *http.Client
}

var _ transport = (*pagerDuty)(nil)

// PagerDutyEvent is an Events API v2 event.
type PagerDutyEvent struct {
	RoutingKey  string            `json:"routing_key"`
	EventAction string            `json:"event_action"`
	DedupKey    string            `json:"dedup_key,omitempty"`
	Payload     *PagerDutyPayload `json:"payload,omitempty"` // trigger only
	Client      string            `json:"client,omitempty"`
}

// PagerDutyPayload is a trigger event's payload.
type PagerDutyPayload struct {
	Summary       string            `json:"summary"`
	Source        string            `json:"source"`
	Severity      string            `json:"severity"`
	CustomDetails map[string]string `json:"custom_details,omitempty"`
}

func (p *pagerDuty) deliver(ctx context.Context, m Message) error {
	ev := PagerDutyEvent{RoutingKey: p.key, EventAction: m.Action, DedupKey: m.DedupKey, Client: "drconsole"}
	switch m.Action {
	case ActionTrigger:
		ev.Payload = &PagerDutyPayload{Summary: truncate(m.Subject, summaryMax), Source: m.Source, Severity: m.Severity}
		if m.Text != "" {
			ev.Payload.CustomDetails = map[string]string{"message": m.Text}
		}
	case ActionAcknowledge, ActionResolve:
		if m.DedupKey == "" {
			return permanentf("PagerDuty %s needs the incident's dedup key", m.Action)
		}
	default:
		return permanentf("%q is not a PagerDuty action (trigger, acknowledge, resolve)", m.Action)
	}
	return postJSON(ctx, p.client, p.url, ev)
}

func httpClient(roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: tr,
		// A webhook answers; it does not send the message (and its secret URL's body) on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// postJSON posts body as JSON and reads the answer: any 2xx is delivered; a 4xx other
// than 408 and 429 (a refused payload, a revoked webhook) or a redirect is permanent.
func postJSON(ctx context.Context, client *http.Client, u string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return permanent{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return permanentf("bad url")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "drconsole")
	resp, err := client.Do(req)
	if err != nil {
		return netErr(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("HTTP %s", resp.Status)
	if s := strings.Join(strings.Fields(string(snippet)), " "); s != "" {
		msg += ": " + truncate(s, 200)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("%s", msg)
	case code >= 300 && code < 400:
		return permanentf("%s (a redirect: check the url)", msg)
	}
	return permanentf("%s", msg)
}
