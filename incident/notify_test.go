package incident

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"drconsole/checklists"
	"drconsole/incident/notify"
	"drconsole/internal/notifytest"
)

// Secrets the channels below are given, none of which may reach the disk.
const (
	slackSecret   = "T024BE7LD/B01SLACKSEC/xoxbSlackHookToken"
	discordSecret = "112233/DiscordHookTokenXYZ"
	pdKey         = "R0UTINGKEYpagerduty0123456789ab"
	smtpPassword  = "smtp-Pa55word-never-on-disk"
)

type notifyRig struct {
	slack, discord, pd *notifytest.Receiver
	mail               *notifytest.SMTPServer
	chans              []*notify.Channel
}

func newNotifyRig(t *testing.T, smtpPass string) *notifyRig {
	t.Helper()
	cert := notifytest.NewCert(t)
	r := &notifyRig{
		slack:   notifytest.StartReceiver(t, notifytest.Slack, slackSecret, nil),
		discord: notifytest.StartReceiver(t, notifytest.Discord, discordSecret, nil),
		pd:      notifytest.StartReceiver(t, notifytest.PagerDuty, pdKey, nil),
		mail:    notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Username: "drconsole", Password: smtpPassword}),
	}
	src := `
notify:
  - name: ops-slack
    type: slack
    url_env: SLACK_URL
  - name: ops-discord
    type: discord
    url_env: DISCORD_URL
    drills: true
  - name: ops-mail
    type: smtp
    host: ` + r.mail.Addr + `
    username: drconsole
    password_env: SMTP_PASSWORD
    from: drconsole@example.com
    to: [alerts@example.com]
    ca_file: ` + cert.CAFile + `
    drills: true
    escalation: [Team Lead]
  - name: pager
    type: pagerduty
    routing_key_env: PD_KEY
    url: ` + r.pd.URL + `
    drills: true
`
	env := map[string]string{"SLACK_URL": r.slack.URL, "DISCORD_URL": r.discord.URL, "PD_KEY": pdKey, "SMTP_PASSWORD": smtpPass}
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
	r.chans = chans
	return r
}

func startIncident(t *testing.T, stateDir string, drill bool) *checklists.Journal {
	t.Helper()
	sc, _ := checklists.Default().Scenario(checklists.DefaultScenario)
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Scenario: sc, Drill: drill, Operator: "alice", Host: "bastion1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

var quick = &notify.Sender{Timeout: 2 * time.Second, Attempts: 3, Backoff: 10 * time.Millisecond}

// Every delivery, good or bad, is journaled and in the report, and no channel secret is
// written anywhere under the state directory.
func TestNotifyJournalsEveryDeliveryAndNoSecret(t *testing.T) {
	r := newNotifyRig(t, "a-wrong-password-for-smtp") // the mail fails: bad credentials
	r.discord.FailNext(500)                           // the Discord post is retried once
	state := t.TempDir()
	j := startIncident(t, state, false)
	run := New(j, "alice", false)
	inc := j.Incident()
	m := Draft(inc, checklists.Default().Escalation, inc.Started.Add(42*time.Minute), OnUpdate)
	var got []notify.Delivery
	for d := range run.Notify(context.Background(), quick, r.chans, m, 8) {
		got = append(got, d)
	}
	if len(got) != 4 {
		t.Fatalf("%d deliveries", len(got))
	}
	byName := map[string]notify.Delivery{}
	for _, d := range got {
		byName[d.Channel] = d
	}
	if !byName["ops-slack"].OK() || !byName["pager"].OK() || !byName["ops-discord"].OK() || byName["ops-discord"].Attempts != 2 {
		t.Errorf("%+v", got)
	}
	if d := byName["ops-mail"]; d.OK() || !strings.Contains(d.Err.Error(), "535") {
		t.Errorf("mail: %+v", d)
	}
	if ev := r.pd.Delivered(); len(ev) != 1 || ev[0].Body["dedup_key"] != "drconsole/"+j.ID() || ev[0].Body["event_action"] != "trigger" {
		t.Errorf("pagerduty got %+v", ev)
	}
	if run.Err() != nil {
		t.Fatal(run.Err())
	}

	inc = j.Incident()
	if len(inc.Notifications) != 4 {
		t.Fatalf("%d notifications journaled", len(inc.Notifications))
	}
	for _, n := range inc.Notifications {
		want := checklists.ResultDelivered
		if n.Channel == "ops-mail" {
			want = checklists.ResultFailed
		}
		if n.Result != want || n.Step != 8 || n.Who != "alice" || n.Subject != m.Subject || n.Text != m.Text {
			t.Errorf("journaled %+v", n)
		}
	}
	md := checklists.BuildReport(inc, nil, time.Now()).Markdown()
	for _, name := range []string{"ops-slack", "ops-discord", "ops-mail", "pager"} {
		if !strings.Contains(md, "| "+name+" | update: "+m.Subject) {
			t.Errorf("the report lacks the message to %s:\n%s", name, md)
		}
	}
	if !strings.Contains(md, "**failed**: not delivered to ops-mail: AUTH: 535") {
		t.Errorf("the report does not say why the mail failed:\n%s", md)
	}
	j.Close()
	report := filepath.Join(state, "report.md")
	os.WriteFile(report, []byte(md), 0o600)
	noSecretOnDisk(t, state, slackSecret, discordSecret, pdKey, "a-wrong-password-for-smtp", r.slack.URL, r.discord.URL)
}

// noSecretOnDisk reads every file under dir and fails if any secret is in one.
func noSecretOnDisk(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		n++
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("%s holds the secret %q", p, s)
			}
		}
		return nil
	})
	if n == 0 {
		t.Fatal("no file to search")
	}
}

func TestDrillUpdatesGoOnlyToDrillChannels(t *testing.T) {
	r := newNotifyRig(t, smtpPassword)
	j := startIncident(t, t.TempDir(), true)
	run := New(j, "alice", false)
	to := UpdateRecipients(r.chans, true)
	if len(to) != 2 || to[0].Name != "ops-discord" || to[1].Name != "ops-mail" {
		t.Fatalf("drill update recipients: %v", to)
	}
	m := Draft(j.Incident(), nil, time.Now(), OnStart)
	for d := range run.Notify(context.Background(), quick, to, m, 0) {
		if !d.OK() {
			t.Fatal(d.Err)
		}
	}
	if c := r.discord.Delivered()[0].Body["content"].(string); !strings.HasPrefix(c, "[DRILL] Database Corruption: ") || !strings.Contains(c, "an exercise") {
		t.Errorf("discord got %q", c)
	}
	if len(r.slack.Got()) != 0 {
		t.Error("a drill message reached the channel not marked for drills")
	}
	mails := r.mail.Mails()
	if len(mails) != 1 || !strings.Contains(mails[0].Data, "Subject: [DRILL] Database Corruption") {
		t.Errorf("mails %+v", mails)
	}
	// the escalation's recipients: the mail list of the Team Lead, and PagerDuty for every level
	if to := EscalationRecipients(r.chans, "Team Lead", true); len(to) != 2 || to[0].Name != "ops-mail" || to[1].Name != "pager" {
		t.Errorf("escalation recipients: %v", to)
	}
	if to := EscalationRecipients(r.chans, "CTO", false); len(to) != 1 || to[0].Name != "pager" {
		t.Errorf("CTO recipients: %v", to)
	}
}

// The close resolves the PagerDuty incident the escalation triggered, under the same key.
func TestCloseResolvesThePage(t *testing.T) {
	r := newNotifyRig(t, smtpPassword)
	j := startIncident(t, t.TempDir(), false)
	run := New(j, "alice", false)
	path := checklists.Default().Escalation
	inc := j.Incident()
	page := EscalationDraft(inc, path, inc.Started.Add(31*time.Minute), 2)
	if !strings.HasPrefix(page.Subject, "Escalation to Team Lead: Database Corruption, recovery in progress, 31m of 2h RTO") {
		t.Errorf("page subject %q", page.Subject)
	}
	for d := range run.Notify(context.Background(), quick, EscalationRecipients(r.chans, "Team Lead", false), page, 0) {
		if !d.OK() {
			t.Fatal(d.Err)
		}
	}
	run.Record(checklists.Event{Type: checklists.EventEscalationAck, Level: 2, Title: "Team Lead", Result: "paged", Who: "alice"})
	inc = j.Incident()
	to := CloseRecipients(r.chans, inc)
	names := []string{}
	for _, c := range to {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "ops-slack,ops-discord,ops-mail,pager" {
		t.Fatalf("close recipients %v", names)
	}
	closing := Draft(inc, path, time.Now(), OnClose)
	for d := range run.Notify(context.Background(), quick, to, closing, 0) {
		if !d.OK() {
			t.Fatal(d.Err)
		}
	}
	ev := r.pd.Delivered()
	if len(ev) != 2 || ev[1].Body["event_action"] != "resolve" || ev[0].Body["dedup_key"] != ev[1].Body["dedup_key"] {
		t.Errorf("pagerduty events %+v", ev)
	}
	if !j.Incident().Acknowledged(2) {
		t.Error("the escalation's acknowledgement is not recorded")
	}
}

func TestDraftSaysWhereTheIncidentStands(t *testing.T) {
	j := startIncident(t, t.TempDir(), false)
	run := New(j, "alice", false)
	t0 := j.Incident().Started
	run.Record(
		checklists.Event{Type: checklists.EventStepStarted, Step: 4, Time: t0.Add(30 * time.Minute)},
		checklists.Event{Type: checklists.EventRestoreStarted, Step: 4, Backup: "spywatcher_full_20240125_120000.dump.gz", Time: t0.Add(31 * time.Minute)},
		checklists.Event{Type: checklists.EventRestoreProgress, Milestone: "load: 12 of 42 tables", Time: t0.Add(40 * time.Minute)},
	)
	m := Draft(j.Incident(), checklists.Default().Escalation, t0.Add(42*time.Minute), OnUpdate)
	if m.Subject != "Database Corruption: restore running, 42m of 2h RTO" {
		t.Errorf("subject %q", m.Subject)
	}
	next := t0.Add(72 * time.Minute).UTC().Format("15:04 UTC")
	for _, want := range []string{
		"State: restore running.",
		"Elapsed: 42m of the 2h RTO (1h18m left).",
		"Now: step 4 of 8, Restore Database, 12m of its 1h.",
		"Restore: spywatcher_full_20240125_120000.dump.gz, load: 12 of 42 tables.",
		"Escalation: level 2, Team Lead.",
		"Next update: by " + next + ".",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("draft lacks %q:\n%s", want, m.Text)
		}
	}
}
