package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"drconsole/checklists"
	"drconsole/internal/notifytest"
)

const (
	cliSlackSecret = "T0CLI/B0CLI/cliSlackHookSecret"
	cliPDKey       = "cliRoutingKey0123456789abcdef"
	cliSMTPPass    = "cli-smtp-password-right"
)

type cliNotifyRig struct {
	slack, discord, pd *notifytest.Receiver
	mail               *notifytest.SMTPServer
	env                map[string]string
	state              string
}

// newCLINotifyRig writes a config file with four channels on real local servers; the
// mail channel's password is smtpPass (right or wrong).
func newCLINotifyRig(t *testing.T, smtpPass string) *cliNotifyRig {
	t.Helper()
	cert := notifytest.NewCert(t)
	r := &cliNotifyRig{
		slack:   notifytest.StartReceiver(t, notifytest.Slack, cliSlackSecret, nil),
		discord: notifytest.StartReceiver(t, notifytest.Discord, "99/cliDiscordSecret", nil),
		pd:      notifytest.StartReceiver(t, notifytest.PagerDuty, cliPDKey, nil),
		mail:    notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Username: "drconsole", Password: cliSMTPPass}),
		state:   t.TempDir(),
	}
	dir := t.TempDir()
	cfg := `locations:
  - name: local
    path: ` + dir + `
notify:
  - name: ops-slack
    type: slack
    url_env: SLACK_WEBHOOK_URL
  - name: ops-discord
    type: discord
    url_env: DISCORD_WEBHOOK_URL
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
  - name: pager
    type: pagerduty
    routing_key_env: PAGERDUTY_ROUTING_KEY
    url: ` + r.pd.URL + `
`
	file := filepath.Join(dir, "drconsole.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{"DRCONSOLE_CONFIG": file, "XDG_STATE_HOME": r.state, "USER": "alice",
		"SLACK_WEBHOOK_URL": r.slack.URL, "DISCORD_WEBHOOK_URL": r.discord.URL, "PAGERDUTY_ROUTING_KEY": cliPDKey, "SMTP_PASSWORD": smtpPass}
	return r
}

func TestCLINotifyTestSaysWhatFailed(t *testing.T) {
	r := newCLINotifyRig(t, "wrong-smtp-password")
	r.discord.FailNext(500)
	out, errb, code := runCLI(t, r.env, "notify", "test")
	if code != exitNotify {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitNotify, out, errb)
	}
	for _, want := range []string{
		"delivered  ops-slack (slack)      in ",
		"delivered  ops-discord (discord)  in ",
		", 2 attempts\n",
		"FAILED     ops-mail (smtp)        AUTH: 535 5.7.8 Authentication failed (check username and password)\n",
		"delivered  pager (pagerduty)      in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errb != "drconsole notify test: not delivered to 1 of 4 channels: ops-mail\n" {
		t.Errorf("stderr %q", errb)
	}
	// the PagerDuty test is triggered and resolved under one key of its own
	ev := r.pd.Delivered()
	if len(ev) != 2 || ev[0].Body["event_action"] != "trigger" || ev[1].Body["event_action"] != "resolve" || ev[0].Body["dedup_key"] != ev[1].Body["dedup_key"] ||
		!strings.HasPrefix(ev[0].Body["dedup_key"].(string), "drconsole/test-pager-") {
		t.Errorf("pagerduty got %+v", ev)
	}

	out, _, code = runCLI(t, r.env, "notify", "test", "ops-slack", "--json")
	var got []deliveryJSON
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || !got[0].Delivered || got[0].Attempts != 1 {
		t.Errorf("notify test ops-slack --json: exit %d %s", code, out)
	}
	_, errb, code = runCLI(t, r.env, "notify", "test", "teams")
	if code != exitUsage || !strings.Contains(errb, "no notify channel teams; the channels are ops-slack, ops-discord, ops-mail, pager") {
		t.Errorf("exit %d: %s", code, errb)
	}
	// a secret's variable not set: that channel fails and says why, the others are sent
	env := map[string]string{}
	for k, v := range r.env {
		env[k] = v
	}
	delete(env, "PAGERDUTY_ROUTING_KEY")
	out, _, code = runCLI(t, env, "notify", "test", "pager")
	if code != exitNotify || !strings.Contains(out, "FAILED     pager (pagerduty)  $PAGERDUTY_ROUTING_KEY (routing_key_env) is not set") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestCLINotifySendRecordsInTheIncidentAndReport(t *testing.T) {
	r := newCLINotifyRig(t, cliSMTPPass)
	stateDir := filepath.Join(r.state, "drconsole")
	sc, _ := checklists.Default().Scenario(checklists.DefaultScenario)
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Scenario: sc, Operator: "alice", Host: "bastion1"})
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	j.Close()

	out, errb, code := runCLI(t, r.env, "notify", "send", "--incident", "latest")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	if n := len(r.slack.Delivered()) + len(r.discord.Delivered()) + len(r.mail.Mails()); n != 3 || len(r.pd.Got()) != 0 {
		t.Errorf("the update reached %d update channels and PagerDuty %d times", n, len(r.pd.Got()))
	}
	text := r.slack.Delivered()[0].Body["text"].(string)
	if !strings.HasPrefix(text, "Database Corruption: recovery in progress, 0m of 2h RTO\nIncident "+id) || !strings.Contains(text, "Next update: by ") {
		t.Errorf("slack got %q", text)
	}
	// a page and its resolution, by script, under the incident's dedup key
	for _, action := range []string{"trigger", "resolve"} {
		if out, errb, code := runCLI(t, r.env, "notify", "send", "--incident", id, "--action", action, "--message", "paging from cron"); code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", action, code, out, errb)
		}
	}
	if ev := r.pd.Delivered(); len(ev) != 2 || ev[0].Body["dedup_key"] != "drconsole/"+id || ev[1].Body["event_action"] != "resolve" {
		t.Errorf("pagerduty got %+v", ev)
	}
	out, _, code = runCLI(t, r.env, "report", id)
	if code != 0 || !strings.Contains(out, "## Updates and pages") || strings.Count(out, "| update: ") != 4 ||
		!strings.Contains(out, "| pager | update (resolve): paging from cron | delivered in ") {
		t.Errorf("report (exit %d):\n%s", code, out)
	}
	// drconsole config lists the channels with their secrets replaced
	out, _, _ = runCLI(t, r.env, "config")
	if !strings.Contains(out, "ops-slack slack http://127.0.0.1:") || !strings.Contains(out, "/[REDACTED] (url from $SLACK_WEBHOOK_URL); updates") ||
		!strings.Contains(out, "pager pagerduty "+r.pd.URL+" (routing_key from $PAGERDUTY_ROUTING_KEY); escalation: all") {
		t.Errorf("config:\n%s", out)
	}
	for _, secret := range []string{cliSlackSecret, cliPDKey, cliSMTPPass, "cliDiscordSecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("config shows the secret %q", secret)
		}
	}
	noSecretUnder(t, r.state, cliSlackSecret, cliPDKey, cliSMTPPass, "cliDiscordSecret")
}

func TestCLINotifySendDrill(t *testing.T) {
	r := newCLINotifyRig(t, cliSMTPPass)
	out, errb, code := runCLI(t, r.env, "notify", "send", "--drill", "--message", "tabletop: primary region lost", "--subject", "Regional outage")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	if len(r.slack.Got()) != 0 || len(r.discord.Delivered()) != 1 || len(r.mail.Mails()) != 1 {
		t.Errorf("slack %d, discord %d, mail %d", len(r.slack.Got()), len(r.discord.Delivered()), len(r.mail.Mails()))
	}
	if c := r.discord.Delivered()[0].Body["content"]; c != "[DRILL] Regional outage\ntabletop: primary region lost" {
		t.Errorf("discord got %q", c)
	}
	_, errb, code = runCLI(t, r.env, "notify", "send")
	if code != exitUsage || !strings.Contains(errb, "nothing to send") {
		t.Errorf("exit %d %s", code, errb)
	}
	_, errb, code = runCLI(t, r.env, "notify", "send", "--action", "resolve", "--message", "x")
	if code != exitUsage || !strings.Contains(errb, "--action resolve needs --incident") {
		t.Errorf("exit %d %s", code, errb)
	}
}

func noSecretUnder(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	files := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, _ := os.ReadFile(p)
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("%s holds the secret %q", p, s)
			}
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no file under the state directory")
	}
}
