package notify

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Kinds of message: what the journal and the report call them.
const (
	KindUpdate     = "update"     // a status update
	KindEscalation = "escalation" // an escalation level paged or mailed
	KindTest       = "test"       // drconsole notify test
)

// PagerDuty event actions.
const (
	ActionTrigger     = "trigger"
	ActionAcknowledge = "acknowledge"
	ActionResolve     = "resolve"
)

// Actions lists the PagerDuty actions.
var Actions = []string{ActionTrigger, ActionAcknowledge, ActionResolve}

// DrillPrefix starts every drill message's subject, whoever wrote it.
const DrillPrefix = "[DRILL] "

// Message is one status update, page or test, the same for every channel; each channel
// writes it in its own shape.
type Message struct {
	Incident string // the incident's id; PagerDuty's dedup key is made from it
	Drill    bool
	Kind     string
	Subject  string // one line: the e-mail's subject, PagerDuty's summary, the chat's first line
	Text     string // the body
	// Action is PagerDuty's event action (default trigger); other channels send trigger and
	// acknowledge as messages and ignore nothing.
	Action string
	// Severity is PagerDuty's (critical, error, warning, info); default critical, info for drills.
	Severity string
	Source   string // the host the incident is worked from
	// DedupKey overrides the one made from Incident (a test page uses its own).
	DedupKey string
}

// DedupKey is the PagerDuty dedup key of an incident: one PagerDuty incident per drconsole
// incident, triggered, acknowledged and resolved under the same key.
func DedupKey(incident string) string { return "drconsole/" + incident }

// Prepared is the message as sent: a drill's subject starts with DrillPrefix, whatever the
// draft said, and the blanks are filled in. Send prepares every message itself.
func (m Message) Prepared() Message {
	m.Subject = strings.TrimSpace(strings.ReplaceAll(m.Subject, "\n", " "))
	if m.Subject == "" {
		m.Subject = firstLine(m.Text)
	}
	if m.Drill && !strings.HasPrefix(m.Subject, DrillPrefix) {
		m.Subject = DrillPrefix + m.Subject
	}
	if m.Action == "" {
		m.Action = ActionTrigger
	}
	if m.Severity == "" {
		m.Severity = "critical"
		if m.Drill || m.Kind == KindTest {
			m.Severity = "info"
		}
	}
	if m.Source == "" {
		m.Source = "drconsole"
	}
	if m.DedupKey == "" && m.Incident != "" {
		m.DedupKey = DedupKey(m.Incident)
	}
	return m
}

// chat is the message as one chat post: the subject, then the body.
func (m Message) chat() string {
	if strings.TrimSpace(m.Text) == "" || strings.TrimSpace(m.Text) == m.Subject {
		return m.Subject
	}
	return m.Subject + "\n" + m.Text
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// truncate cuts s to at most n characters (runes), ending in "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Delivery is what became of a message on one channel.
type Delivery struct {
	Channel  string
	Type     string
	Attempts int
	Took     time.Duration
	Err      error // nil: delivered; else what failed, with the channel's secrets redacted
}

// OK reports whether the message was delivered.
func (d Delivery) OK() bool { return d.Err == nil }
