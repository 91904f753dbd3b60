package ui

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"drconsole/checklists"
	"drconsole/incident/notify"
	"drconsole/internal/notifytest"
)

type notifyRig struct {
	slack, pd *notifytest.Receiver
	mail      *notifytest.SMTPServer
}

// withChannels gives the console a Slack channel, a mail list for the team lead (its
// password right or wrong) and PagerDuty, on real servers on 127.0.0.1.
func withChannels(t *testing.T, h *harness, smtpPass string) *notifyRig {
	t.Helper()
	cert := notifytest.NewCert(t)
	r := &notifyRig{
		slack: notifytest.StartReceiver(t, notifytest.Slack, "T1/B1/uiSlackSecret", nil),
		pd:    notifytest.StartReceiver(t, notifytest.PagerDuty, "uiRoutingKey0123456789", nil),
		mail:  notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Username: "drconsole", Password: "ui-smtp-pass"}),
	}
	src := `notify:
  - {name: ops-slack, type: slack, url_env: SLACK_URL, drills: true}
  - {name: lead-mail, type: smtp, host: "` + r.mail.Addr + `", username: drconsole, password_env: SMTP_PASSWORD, from: drconsole@example.com, to: [lead@example.com], ca_file: "` + cert.CAFile + `", updates: false, escalation: [Team Lead]}
  - {name: pager, type: pagerduty, routing_key_env: PD_KEY, url: "` + r.pd.URL + `"}
`
	env := map[string]string{"SLACK_URL": r.slack.URL, "SMTP_PASSWORD": smtpPass, "PD_KEY": "uiRoutingKey0123456789"}
	var doc struct {
		Notify yaml.Node `yaml:"notify"`
	}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	chans, err := notify.Parse(&doc.Notify, "drconsole.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	h.m.s.opt.Notify = chans
	h.m.s.opt.Sender = &notify.Sender{Timeout: 2 * time.Second, Attempts: 2, Backoff: 10 * time.Millisecond}
	return r
}

// The incident's start offers an update; u drafts it from the incident, e edits it, and
// nothing is sent until the operator confirms; the deliveries are shown and journaled.
func TestConsoleComposesConfirmsAndSendsAnUpdate(t *testing.T) {
	h := newHarness(t, false)
	r := withChannels(t, h, "ui-smtp-pass")
	h.startIncident()
	h.send(tickMsg(h.now))
	if !strings.Contains(h.screen(), "The incident is open. u sends an update.") {
		t.Fatalf("no update offered at the start:\n%s", h.screen())
	}
	h.now = t0.Add(12 * time.Minute)
	h.send(tickMsg(h.now))
	h.key("u")
	if _, ok := h.top().(*notifyScreen); !ok {
		t.Fatalf("u did not open the update:\n%s", h.screen())
	}
	h.both("notify")
	h.size(80, 24)
	h.key("e")
	h.typeText("DB team on it.")
	h.key("esc", "enter")
	if !strings.Contains(h.screen(), "Send it to 1 channel(s) now? (y/n)") || len(r.slack.Got()) != 0 {
		t.Fatalf("not asked to confirm, or sent before:\n%s", h.screen())
	}
	h.key("n") // not sent
	if len(r.slack.Got()) != 0 || len(h.m.s.journal.Incident().Notifications) != 0 {
		t.Fatal("sent without confirmation")
	}
	h.key("enter", "y")
	got := r.slack.Delivered()
	if len(got) != 1 {
		t.Fatalf("slack got %d posts", len(got))
	}
	text := got[0].Body["text"].(string)
	if !strings.HasPrefix(text, "Database Corruption: recovery in progress, 12m of 2h RTO\n") || !strings.HasSuffix(text, "DB team on it.") {
		t.Errorf("slack got %q", text)
	}
	if _, ok := h.top().(*notifyScreen); ok {
		t.Error("still on the update screen after sending")
	}
	if !strings.Contains(h.screen(), "Update delivered to all 1 channels.") {
		t.Errorf("no delivery shown:\n%s", h.screen())
	}
	inc := h.m.s.journal.Incident()
	if len(inc.Notifications) != 1 || inc.Notifications[0].Result != checklists.ResultDelivered || inc.Notifications[0].Channel != "ops-slack" ||
		!strings.HasSuffix(inc.Notifications[0].Text, "DB team on it.") {
		t.Errorf("journaled %+v", inc.Notifications)
	}
	// A restore journals from its own goroutines; its start is offered all the same.
	h.m.s.run.Record(checklists.Event{Type: checklists.EventRestoreStarted, Step: 4, Backup: "spywatcher_full_20240125_130000.dump.gz.gpg"})
	h.m.status = ""
	h.send(tickMsg(h.now))
	if !strings.Contains(h.screen(), "The restore started. u sends an update.") {
		t.Errorf("the restore's start is not offered:\n%s", h.screen())
	}
	h.key("u")
	if n, ok := h.top().(*notifyScreen); !ok || !strings.Contains(n.body.Value(), "Restore: spywatcher_full_20240125_130000.dump.gz.gpg.") {
		t.Errorf("the draft does not follow the restore:\n%s", h.screen())
	}
}

// When the team lead's level falls due the console offers to page or mail it; a mail that
// fails is shown and journaled, the page goes out, and the acknowledgement is recorded so
// the offer is not made again.
func TestConsoleOffersTheEscalationDue(t *testing.T) {
	h := newHarness(t, false)
	r := withChannels(t, h, "wrong-pass")
	h.startIncident()
	h.now = t0.Add(31 * time.Minute)
	h.send(tickMsg(h.now))
	if !strings.Contains(h.screen(), "Escalation level 2 (Team Lead) is due: p pages or mails them.") {
		t.Fatalf("no escalation offered:\n%s", h.screen())
	}
	h.key("p")
	h.both("escalate")
	h.size(80, 24)
	h.key("enter", "y")
	if ev := r.pd.Delivered(); len(ev) != 1 || ev[0].Body["event_action"] != "trigger" || ev[0].Body["dedup_key"] != "drconsole/"+h.m.s.inc.ID {
		t.Errorf("pagerduty got %+v", ev)
	}
	if !strings.Contains(h.screen(), "UPDATE NOT DELIVERED to 1 of 2 channels") {
		t.Errorf("the failed mail is not shown:\n%s", h.screen())
	}
	inc := h.m.s.journal.Incident()
	if !inc.Acknowledged(2) || inc.Escalations[0].Result != "paged" || len(inc.Notifications) != 2 {
		t.Fatalf("escalations %+v notifications %+v", inc.Escalations, inc.Notifications)
	}
	for _, n := range inc.Notifications {
		if n.Channel == "lead-mail" && (n.Result != checklists.ResultFailed || !strings.Contains(n.Error, "535")) {
			t.Errorf("mail journaled as %+v", n)
		}
	}
	h.m.status = ""
	h.send(tickMsg(h.now))
	if strings.Contains(h.screen(), "is due: p pages") {
		t.Error("the answered escalation is offered again")
	}
}

// A runbook notify step sends its update from enter, and a drill's goes only to the
// channels marked for drills, prefixed.
func TestNotifyStepInADrill(t *testing.T) {
	h := newHarness(t, true)
	r := withChannels(t, h, "ui-smtp-pass")
	h.send(h.m.top().init()())
	h.key("enter", "down", "enter") // a drill of Infrastructure Failure
	if h.m.s.inc == nil || h.m.s.inc.Scenario != "infrastructure-failure" {
		t.Fatalf("not in the drill:\n%s", h.screen())
	}
	h.send(pushMsg{newStepScreen(h.m.s, 8)})
	if !strings.Contains(h.screen(), "enter: draft the status update") {
		t.Fatalf("%s", h.screen())
	}
	h.key("enter")
	n, ok := h.top().(*notifyScreen)
	if !ok || len(n.to) != 1 || n.to[0].Name != "ops-slack" {
		t.Fatalf("the drill's update goes to %v:\n%s", n.to, h.screen())
	}
	h.key("enter", "y")
	if got := r.slack.Delivered(); len(got) != 1 || !strings.HasPrefix(got[0].Body["text"].(string), "[DRILL] Complete Infrastructure Failure: ") {
		t.Errorf("slack got %+v", got)
	}
	if inc := h.m.s.journal.Incident(); len(inc.Notifications) != 1 || inc.Notifications[0].Step != 8 {
		t.Errorf("journaled %+v", inc.Notifications)
	}
	if len(r.pd.Got()) != 0 || len(r.mail.Mails()) != 0 {
		t.Error("a drill's update reached a channel not marked for drills")
	}
}
