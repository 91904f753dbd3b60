package notify

import (
	"context"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"drconsole/internal/notifytest"
)

// fast retries keep the tests quick; the figures are the same shape as the defaults'.
var fast = &Sender{Timeout: 2 * time.Second, Attempts: 3, Backoff: 20 * time.Millisecond}

func parse(t *testing.T, src string, env map[string]string) ([]*Channel, error) {
	t.Helper()
	var doc struct {
		Notify yaml.Node `yaml:"notify"`
	}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return Parse(&doc.Notify, "drconsole.yaml", func(k string) string { return env[k] })
}

func mustParse(t *testing.T, src string, env map[string]string) map[string]*Channel {
	t.Helper()
	chans, err := parse(t, src, env)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Channel{}
	for _, c := range chans {
		out[c.Name] = c
	}
	return out
}

func TestParseChannels(t *testing.T) {
	chans := mustParse(t, `
notify:
  - name: ops-slack
    type: slack
    url_env: SLACK_URL
    drills: true
    alert: Slack
  - name: pager
    type: pagerduty
    routing_key_env: PD_KEY
  - name: mail
    type: smtp
    host: mail.example.com
    username: drconsole
    password_env: SMTP_PASSWORD
    from: drconsole@example.com
    to: [alerts@example.com, "Team Lead <lead@example.com>"]
    escalation: [Team Lead]
`, map[string]string{"SLACK_URL": "https://hooks.slack.com/services/T1/B2/sekrit-token", "PD_KEY": "R0UTINGKEY0123"})
	s, p, m := chans["ops-slack"], chans["pager"], chans["mail"]
	if s.Err != nil || !s.Drills || !s.Updates || s.Where != "https://hooks.slack.com/"+Redacted || s.From != "url from $SLACK_URL" {
		t.Errorf("slack: %+v", s)
	}
	if p.Err != nil || p.Updates || !p.Reaches("CTO") || p.Where != PagerDutyURL {
		t.Errorf("pagerduty: %+v", p)
	}
	// The password's variable is not set: the channel is listed, unusable, and says why.
	if m.Err == nil || !strings.Contains(m.Err.Error(), "$SMTP_PASSWORD (password_env) is not set") {
		t.Errorf("mail Err = %v", m.Err)
	}
	if !m.Reaches("team lead") || m.Reaches("CTO") || m.Where != "smtp://mail.example.com:587 (starttls) as drconsole to alerts@example.com, lead@example.com" {
		t.Errorf("mail: %+v", m)
	}
	for _, c := range []*Channel{s, p} {
		for _, sec := range c.Secrets() {
			if strings.Contains(c.Where+c.From, sec) {
				t.Errorf("%s shows its secret %q", c.Name, sec)
			}
		}
	}
}

func TestParseChannelErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"notify:\n  - name: a\n    type: slack\n    urll: x\n", "drconsole.yaml:4: field urll not found in a notify channel"},
		{"notify:\n  - name: a\n    type: teams\n    url: https://x/y\n", `drconsole.yaml:2: notify channel "a": type "teams" is not one of slack, discord, webhook, smtp, pagerduty`},
		{"notify:\n  - type: slack\n    url: https://x/y\n", "drconsole.yaml:2: a notify channel has no name"},
		{"notify:\n  - name: a\n    type: slack\n    url: https://x/y\n  - name: a\n    type: slack\n    url: https://x/z\n", `drconsole.yaml:5: notify channel "a": the name is used twice`},
		{"notify:\n  - name: a\n    type: slack\n", "type slack needs url_env (or url)"},
		{"notify:\n  - name: a\n    type: slack\n    url: https://x/y\n    to: [a@b.c]\n", "type slack does not take to"},
		{"notify:\n  - name: m\n    type: smtp\n    host: mail.example.com:25\n    tls: none\n    from: a@b.c\n    to: [c@d.e]\n", "tls: none is for a relay on this machine only"},
		{"notify:\n  - name: m\n    type: smtp\n    host: h:587\n    from: a@b.c\n", "type smtp needs to"},
		{"notify: {}\n", "notify: is a list of channels"},
	} {
		_, err := parse(t, c.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want %q", c.yaml, err, c.want)
		}
	}
	// plain http to another host would carry the webhook's secret in clear
	chans := mustParse(t, "notify:\n  - name: a\n    type: webhook\n    url: http://example.com/hook/abcdef\n", nil)
	if chans["a"].Err == nil || !strings.Contains(chans["a"].Err.Error(), "use https") {
		t.Errorf("Err = %v", chans["a"].Err)
	}
}

func hookChannel(t *testing.T, kind, url string, extra string) *Channel {
	t.Helper()
	src := "notify:\n  - name: " + kind + "\n    type: " + kind + "\n    drills: true\n" + extra
	env := map[string]string{"URL": url}
	if kind == TypePagerDuty {
		src += "    routing_key_env: KEY\n    url_env: URL\n"
		env["KEY"] = strings.TrimPrefix(url, "key:")
	} else {
		src += "    url_env: URL\n"
	}
	return mustParse(t, src, env)[kind]
}

func pdChannel(t *testing.T, r *notifytest.Receiver) *Channel {
	t.Helper()
	return mustParse(t, "notify:\n  - name: pager\n    type: pagerduty\n    routing_key_env: KEY\n    url: "+r.URL+"\n    drills: true\n",
		map[string]string{"KEY": r.Secret})["pager"]
}

func TestPayloadShapes(t *testing.T) {
	ctx := context.Background()
	msg := Message{Incident: "20240125-120000-database-corruption", Kind: KindUpdate, Subject: "Database corruption: restore running",
		Text: "Elapsed 42m of the 2h RTO.\nNext update by 12:55 UTC.", Source: "bastion1"}

	slack := notifytest.StartReceiver(t, notifytest.Slack, "T0/B0/slacksecret123", nil)
	discord := notifytest.StartReceiver(t, notifytest.Discord, "1234/discordsecret456", nil)
	webhook := notifytest.StartReceiver(t, notifytest.Webhook, "webhooksecret789", nil)
	pd := notifytest.StartReceiver(t, notifytest.PagerDuty, "pdroutingkey0123456789", nil)

	for _, c := range []struct {
		ch *Channel
		r  *notifytest.Receiver
	}{{hookChannel(t, TypeSlack, slack.URL, ""), slack}, {hookChannel(t, TypeDiscord, discord.URL, ""), discord},
		{hookChannel(t, TypeWebhook, webhook.URL, ""), webhook}, {pdChannel(t, pd), pd}} {
		d := fast.Send(ctx, c.ch, msg)
		if !d.OK() || d.Attempts != 1 {
			t.Fatalf("%s: %+v", c.ch.Name, d)
		}
		got := c.r.Got()
		if len(got) != 1 || got[0].Problem != "" {
			t.Fatalf("%s received %+v", c.ch.Name, got)
		}
	}
	if text := slack.Got()[0].Body["text"]; text != msg.Subject+"\n"+msg.Text {
		t.Errorf("slack text = %q", text)
	}
	if content := discord.Got()[0].Body["content"]; content != msg.Subject+"\n"+msg.Text {
		t.Errorf("discord content = %q", content)
	}
	if b := webhook.Got()[0].Body; b["incident"] != msg.Incident || b["kind"] != "update" || b["subject"] != msg.Subject || b["drill"] != false {
		t.Errorf("webhook body = %v", b)
	}
	b := pd.Got()[0].Body
	p := b["payload"].(map[string]any)
	if b["event_action"] != "trigger" || b["dedup_key"] != "drconsole/"+msg.Incident || p["summary"] != msg.Subject ||
		p["source"] != "bastion1" || p["severity"] != "critical" {
		t.Errorf("pagerduty event = %v", b)
	}
	// acknowledge and resolve under the same dedup key, without a payload
	for _, action := range []string{ActionAcknowledge, ActionResolve} {
		m := msg
		m.Action = action
		if d := fast.Send(ctx, pdChannel(t, pd), m); !d.OK() {
			t.Fatalf("%s: %v", action, d.Err)
		}
		last := pd.Got()[len(pd.Got())-1]
		if last.Problem != "" || last.Body["event_action"] != action || last.Body["dedup_key"] != "drconsole/"+msg.Incident || last.Body["payload"] != nil {
			t.Errorf("%s event = %+v", action, last)
		}
	}
}

func TestDiscordContentIsCutTo2000(t *testing.T) {
	discord := notifytest.StartReceiver(t, notifytest.Discord, "1/discordsecret", nil)
	long := strings.Repeat("é", 5000)
	d := fast.Send(context.Background(), hookChannel(t, TypeDiscord, discord.URL, ""), Message{Subject: "long", Text: long})
	if !d.OK() {
		t.Fatal(d.Err)
	}
	c := discord.Got()[0].Body["content"].(string)
	if n := len([]rune(c)); n != 2000 || !strings.HasSuffix(c, "…") {
		t.Errorf("content is %d characters", n)
	}
}

func TestRetriesA500ThenDelivers(t *testing.T) {
	slack := notifytest.StartReceiver(t, notifytest.Slack, "T/B/retrysecret", nil)
	slack.FailNext(500, 503)
	start := time.Now()
	d := fast.Send(context.Background(), hookChannel(t, TypeSlack, slack.URL, ""), Message{Subject: "up"})
	if !d.OK() || d.Attempts != 3 {
		t.Fatalf("%+v", d)
	}
	// waits of 20ms then 40ms between the attempts
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("three attempts took %s: the backoff was not waited", took)
	}
	t.Logf("500, 503, 200: delivered on attempt %d after %s", d.Attempts, d.Took.Round(time.Millisecond))
}

func TestA4xxIsNotRetried(t *testing.T) {
	slack := notifytest.StartReceiver(t, notifytest.Slack, "T/B/gonesecret", nil)
	slack.FailNext(http.StatusNotFound)
	ch := hookChannel(t, TypeSlack, slack.URL, "")
	d := fast.Send(context.Background(), ch, Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || len(slack.Got()) != 1 || !strings.Contains(d.Err.Error(), "HTTP 404 Not Found") {
		t.Fatalf("%+v, %d requests", d, len(slack.Got()))
	}
	noSecret(t, d.Err.Error(), ch)
}

func TestTimeoutIsRetriedThenReported(t *testing.T) {
	wh := notifytest.StartReceiver(t, notifytest.Webhook, "slowsecret", nil)
	wh.Stall(5 * time.Second)
	s := &Sender{Timeout: 150 * time.Millisecond, Attempts: 2, Backoff: 10 * time.Millisecond}
	ch := hookChannel(t, TypeWebhook, wh.URL, "")
	start := time.Now()
	d := s.Send(context.Background(), ch, Message{Subject: "up"})
	took := time.Since(start)
	if d.OK() || d.Attempts != 2 || d.Err.Error() != "not delivered to webhook: no answer within 150ms (after 2 attempts)" {
		t.Fatalf("%+v", d)
	}
	if took > time.Second {
		t.Errorf("two 150ms attempts took %s", took)
	}
	t.Logf("2 attempts of 150ms and a 10ms wait gave up after %s", took.Round(time.Millisecond))
}

func TestCancelStopsRetrying(t *testing.T) {
	wh := notifytest.StartReceiver(t, notifytest.Webhook, "cancelsecret", nil)
	wh.FailNext(500, 500, 500)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{Timeout: time.Second, Attempts: 3, Backoff: time.Hour}
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	d := s.Send(ctx, hookChannel(t, TypeWebhook, wh.URL, ""), Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || !strings.Contains(d.Err.Error(), "then stopped: context canceled") {
		t.Fatalf("%+v", d)
	}
}

func TestTLSRefused(t *testing.T) {
	cert := notifytest.NewCert(t)
	wh := notifytest.StartReceiver(t, notifytest.Webhook, "tlssecret", &cert)
	ch := hookChannel(t, TypeWebhook, wh.URL, "")
	d := fast.Send(context.Background(), ch, Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || !strings.Contains(d.Err.Error(), "TLS refused: the server's certificate is not trusted") {
		t.Fatalf("%+v", d)
	}
	noSecret(t, d.Err.Error(), ch)
	// trusting its CA with ca_file, the same receiver gets the message
	ch = hookChannel(t, TypeWebhook, wh.URL, "    ca_file: "+cert.CAFile+"\n")
	if d := fast.Send(context.Background(), ch, Message{Subject: "up"}); !d.OK() {
		t.Fatal(d.Err)
	}
}

func TestDrillsGoOnlyToDrillChannelsPrefixed(t *testing.T) {
	slack := notifytest.StartReceiver(t, notifytest.Slack, "T/B/drillsecret", nil)
	no := mustParse(t, "notify:\n  - name: prod\n    type: slack\n    url: "+slack.URL+"\n", nil)["prod"]
	d := fast.Send(context.Background(), no, Message{Drill: true, Subject: "restore running"})
	if d.OK() || d.Attempts != 0 || len(slack.Got()) != 0 {
		t.Fatalf("a drill reached a channel not marked for drills: %+v", d)
	}
	yes := hookChannel(t, TypeSlack, slack.URL, "")
	if d := fast.Send(context.Background(), yes, Message{Drill: true, Subject: "restore running"}); !d.OK() {
		t.Fatal(d.Err)
	}
	if text := slack.Got()[0].Body["text"]; text != "[DRILL] restore running" {
		t.Errorf("text = %q", text)
	}
}

func smtpChannel(t *testing.T, s *notifytest.SMTPServer, extra string, password string) *Channel {
	t.Helper()
	return mustParse(t, "notify:\n  - name: mail\n    type: smtp\n    host: "+s.Addr+"\n    from: drconsole@example.com\n    to: [alerts@example.com, lead@example.com]\n"+extra,
		map[string]string{"SMTP_PASSWORD": password})["mail"]
}

func TestSMTPStartTLSAndAuth(t *testing.T) {
	cert := notifytest.NewCert(t)
	srv := notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Username: "drconsole", Password: "smtp-pass-word-1"})
	ch := smtpChannel(t, srv, "    username: drconsole\n    password_env: SMTP_PASSWORD\n    ca_file: "+cert.CAFile+"\n    drills: true\n", "smtp-pass-word-1")
	d := fast.Send(context.Background(), ch, Message{Incident: "inc-1", Drill: true, Subject: "Ransomware: café closed", Text: "line one\nline two"})
	if !d.OK() {
		t.Fatal(d.Err)
	}
	mails := srv.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	m := mails[0]
	if !m.TLS || m.User != "drconsole" || m.From != "drconsole@example.com" || strings.Join(m.To, ",") != "alerts@example.com,lead@example.com" {
		t.Errorf("mail %+v", m)
	}
	var subject string
	for _, line := range strings.Split(m.Data, "\r\n") {
		if strings.HasPrefix(line, "Subject: ") {
			subject, _ = new(mime.WordDecoder).DecodeHeader(strings.TrimPrefix(line, "Subject: "))
		}
	}
	if subject != "[DRILL] Ransomware: café closed" || !strings.Contains(m.Data, "line one\r\nline two") || !strings.Contains(m.Data, "X-Drconsole-Incident: inc-1") {
		t.Errorf("subject %q, data:\n%s", subject, m.Data)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	cert := notifytest.NewCert(t)
	srv := notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Implicit: true})
	ch := smtpChannel(t, srv, "    tls: tls\n    ca_file: "+cert.CAFile+"\n", "")
	if d := fast.Send(context.Background(), ch, Message{Subject: "up"}); !d.OK() {
		t.Fatal(d.Err)
	}
	if m := srv.Mails(); len(m) != 1 || !m[0].TLS {
		t.Errorf("%+v", m)
	}
}

func TestSMTPBadCredentialsAreNotRetried(t *testing.T) {
	cert := notifytest.NewCert(t)
	srv := notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert, Username: "drconsole", Password: "right-password"})
	ch := smtpChannel(t, srv, "    username: drconsole\n    password_env: SMTP_PASSWORD\n    ca_file: "+cert.CAFile+"\n", "wrong-password")
	d := fast.Send(context.Background(), ch, Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || srv.AuthFailures() != 1 || !strings.Contains(d.Err.Error(), "AUTH: 535 5.7.8 Authentication failed (check username and password)") {
		t.Fatalf("%+v", d)
	}
	noSecret(t, d.Err.Error(), ch)
}

func TestSMTPWithoutSTARTTLSIsRefused(t *testing.T) {
	srv := notifytest.StartSMTP(t, notifytest.SMTPOptions{})
	ch := smtpChannel(t, srv, "", "")
	d := fast.Send(context.Background(), ch, Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || !strings.Contains(d.Err.Error(), "TLS refused: the server does not offer STARTTLS") || len(srv.Mails()) != 0 {
		t.Fatalf("%+v", d)
	}
	// an untrusted certificate is refused too
	cert := notifytest.NewCert(t)
	srv = notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert})
	d = fast.Send(context.Background(), smtpChannel(t, srv, "", ""), Message{Subject: "up"})
	if d.OK() || d.Attempts != 1 || !strings.Contains(d.Err.Error(), "not trusted") {
		t.Fatalf("%+v", d)
	}
	// tls: none, to a relay on this machine, sends in clear
	srv = notifytest.StartSMTP(t, notifytest.SMTPOptions{})
	if d := fast.Send(context.Background(), smtpChannel(t, srv, "    tls: none\n", ""), Message{Subject: "up"}); !d.OK() {
		t.Fatal(d.Err)
	}
}

func TestSMTPTemporaryFailureIsRetried(t *testing.T) {
	cert := notifytest.NewCert(t)
	srv := notifytest.StartSMTP(t, notifytest.SMTPOptions{Cert: &cert})
	srv.FailNext(1)
	d := fast.Send(context.Background(), smtpChannel(t, srv, "    ca_file: "+cert.CAFile+"\n", ""), Message{Subject: "up"})
	if !d.OK() || d.Attempts != 2 || len(srv.Mails()) != 1 {
		t.Fatalf("%+v", d)
	}
}

func TestUnusableChannelFailsAtOnce(t *testing.T) {
	ch := mustParse(t, "notify:\n  - name: pager\n    type: pagerduty\n    routing_key_env: NOT_SET\n", nil)["pager"]
	d := fast.Send(context.Background(), ch, Message{Subject: "up"})
	if d.OK() || d.Attempts != 0 || d.Err.Error() != "not delivered to pager: $NOT_SET (routing_key_env) is not set" {
		t.Fatalf("%+v", d)
	}
}

func noSecret(t *testing.T, s string, ch *Channel) {
	t.Helper()
	for _, sec := range ch.Secrets() {
		if strings.Contains(s, sec) {
			t.Errorf("%q holds the secret %q", s, sec)
		}
	}
}
