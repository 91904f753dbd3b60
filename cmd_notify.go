package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/incident/notify"
	"drconsole/storage"
)

func newNotifyCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "notify",
		Short: "send status updates and pages: test the channels, or send one from a script",
		Long: `Sends to the channels of the config file's notify: list (Slack and Discord webhooks, generic
JSON webhooks, e-mail over SMTP, PagerDuty Events API v2). drconsole config lists them with
their secrets redacted. Each message is sent with a timeout and retried with growing waits;
an answer that another attempt cannot change (a 4xx, bad credentials, a certificate not
trusted) is not retried. A message that did not reach a channel makes the exit code 11.`,
		Example: "  drconsole notify test\n  drconsole notify test ops-slack\n  drconsole notify send --incident latest\n  drconsole notify send --message 'Database restored, app back at 14:05 UTC'",
		Args:    noArgs(" (notify test or notify send)"),
	}
	c.AddCommand(newNotifyTestCmd(a), newNotifySendCmd(a))
	return c
}

// notifyChannels reads the configured channels. A mistake in the notify: list is a usage
// error; a channel that cannot be used now (a secret's variable not set) is returned with
// its Err, and fails when sent to.
func (a *app) notifyChannels() ([]*notify.Channel, error) {
	cfg, err := storage.LoadConfig(a.configPath, a.getenv)
	if err != nil {
		return nil, usageError{err}
	}
	chans, err := notify.Parse(&cfg.Notify, cfg.File, a.getenv)
	if err != nil {
		return chans, usageError{err}
	}
	return chans, nil
}

// pickChannels returns the channels named, in the configuration's order.
func pickChannels(chans []*notify.Channel, names []string) ([]*notify.Channel, error) {
	if len(chans) == 0 {
		return nil, usagef("no notify channels are configured: add a notify: list to the config file (see drconsole notify -h and the README)")
	}
	if len(names) == 0 {
		return chans, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []*notify.Channel
	var all []string
	for _, c := range chans {
		all = append(all, c.Name)
		if want[c.Name] {
			out = append(out, c)
			delete(want, c.Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		sort.Strings(unknown)
		return nil, usagef("no notify channel %s; the channels are %s", strings.Join(unknown, ", "), strings.Join(all, ", "))
	}
	return out, nil
}

// deliveryJSON is one channel's delivery in --json output.
type deliveryJSON struct {
	Channel   string  `json:"channel"`
	Type      string  `json:"type"`
	Delivered bool    `json:"delivered"`
	Attempts  int     `json:"attempts"`
	Seconds   float64 `json:"seconds"`
	Error     string  `json:"error,omitempty"`
}

// printDeliveries writes one line per channel, in chans' order, and returns an error
// naming the channels the message did not reach.
func (a *app) printDeliveries(chans []*notify.Channel, got []notify.Delivery, asJSON bool) error {
	by := map[string]notify.Delivery{}
	for _, d := range got {
		by[d.Channel] = d
	}
	var out []deliveryJSON
	var failed []string
	for _, c := range chans {
		d := by[c.Name]
		out = append(out, deliveryJSON{Channel: c.Name, Type: c.Type, Delivered: d.OK(), Attempts: d.Attempts, Seconds: d.Took.Seconds(), Error: notify.Reason(d.Err)})
		if !d.OK() {
			failed = append(failed, c.Name)
		}
	}
	if asJSON {
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		width := 0
		for _, c := range chans {
			width = max(width, len(c.String()))
		}
		for _, d := range out {
			name := fmt.Sprintf("%-*s", width, d.Channel+" ("+d.Type+")")
			attempts := ""
			if d.Attempts > 1 {
				attempts = fmt.Sprintf(", %d attempts", d.Attempts)
			}
			if d.Delivered {
				fmt.Fprintf(a.stdout, "delivered  %s  in %s%s\n", name, d.seconds(), attempts)
			} else {
				fmt.Fprintf(a.stdout, "FAILED     %s  %s\n", name, d.Error)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w to %d of %d channels: %s", notify.ErrNotDelivered, len(failed), len(chans), strings.Join(failed, ", "))
	}
	return nil
}

func (d deliveryJSON) seconds() string {
	return (time.Duration(d.Seconds * float64(time.Second))).Round(10 * time.Millisecond).String()
}

func newNotifyTestCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "test [NAME] [flags]",
		Short: "send a test message to one channel, or to all, and say what failed",
		Long: `Sends a test message to the channel NAME, or to every configured channel, and prints
one line per channel: delivered, or why not. For a PagerDuty channel the test triggers an
event of severity info under a dedup key of its own and resolves it at once: on-call may
still be notified, depending on the service's urgency rules. The exit code is 11 when any
channel was not reached, 2 when the configuration is wrong.`,
		Example: "  drconsole notify test\n  drconsole notify test ops-mail\n  drconsole notify test --json",
		Args:    maxArgs(1, "NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			all, err := a.notifyChannels()
			if err != nil && len(all) == 0 {
				return err
			}
			if err != nil { // the usable channels are still tested; the mistake is said first
				fmt.Fprintf(a.stderr, "drconsole notify test: %s\n", oneLine(err))
			}
			chans, perr := pickChannels(all, args)
			if perr != nil {
				return perr
			}
			got := a.sendTests(c.Context(), chans)
			if derr := a.printDeliveries(chans, got, asJSON); derr != nil {
				return derr
			}
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the deliveries as JSON")
	return c
}

// sendTests sends each channel its test message at once, and waits for all.
func (a *app) sendTests(ctx context.Context, chans []*notify.Channel) []notify.Delivery {
	host, _ := os.Hostname()
	who := checklists.Operator(a.getenv)
	now := time.Now().UTC()
	out := make(chan notify.Delivery, len(chans))
	for _, ch := range chans {
		go func(ch *notify.Channel) {
			m := notify.Message{Kind: notify.KindTest, Source: host,
				Subject:  fmt.Sprintf("drconsole test message to %s", ch.Name),
				Text:     fmt.Sprintf("A test from drconsole on %s by %s at %s. Nothing is wrong; nothing needs doing.", host, who, now.Format("2006-01-02 15:04 UTC")),
				DedupKey: fmt.Sprintf("drconsole/test-%s-%d", ch.Name, now.UnixNano())}
			s := &notify.Sender{}
			d := s.Send(ctx, ch, m)
			if d.OK() && ch.Type == notify.TypePagerDuty {
				m.Action = notify.ActionResolve
				r := s.Send(ctx, ch, m)
				r.Attempts = max(r.Attempts, d.Attempts) // a resolve after the trigger is not a retry
				r.Took += d.Took
				if r.Err != nil {
					r.Err = fmt.Errorf("the test event was triggered, but resolving it failed: %s (resolve %s in PagerDuty)", notify.Reason(r.Err), m.DedupKey)
				}
				d = r
			}
			out <- d
		}(ch)
	}
	var got []notify.Delivery
	for range chans {
		got = append(got, <-out)
	}
	return got
}

type notifySendOptions struct {
	channels []string
	message  string
	subject  string
	incident string
	action   string
	drill    bool
	asJSON   bool
}

func newNotifySendCmd(a *app) *cobra.Command {
	o := &notifySendOptions{}
	c := &cobra.Command{
		Use:   "send [flags]",
		Short: "send a status update (or a PagerDuty event) from a script",
		Long: `Sends a message and waits for its delivery on each channel. With --incident the message is
recorded in that incident's journal (and so in its report), and without --message it is
the update drafted from the incident: scenario, state, elapsed time against the RTO, the
current step, the restore's progress or result, and the next update's time. An incident
open in a console cannot be joined: send from the console.

The channels are those named by --channel, else those taking updates (with --action,
the PagerDuty channels). A drill's message (--drill, or an
incident that is a drill) goes only to channels marked drills: true, and starts with
[DRILL].`,
		Example: "  drconsole notify send --incident latest\n  drconsole notify send --message 'Restore finished, app back up' --channel ops-slack --channel ops-mail\n  echo 'Failing over to us-west' | drconsole notify send --message - --subject 'Regional outage'\n  drconsole notify send --incident latest --action resolve",
		Args:    noArgs(""),
		RunE: func(c *cobra.Command, _ []string) error {
			return a.runNotifySend(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.channels, "channel", nil, "send to the channel `NAME` (repeat for several; default: the channels taking updates)")
	f.StringVar(&o.message, "message", "", "the message `text`; - reads it from standard input (default with --incident: the drafted update)")
	f.StringVar(&o.subject, "subject", "", "the one-line `subject` (e-mail subject, PagerDuty summary; default: the message's first line)")
	f.StringVar(&o.incident, "incident", "", "record in the open incident `ID` (a unique prefix, or latest), and draft the update from it")
	f.StringVar(&o.action, "action", "", "PagerDuty's event `action`: trigger, acknowledge or resolve; sent to the PagerDuty channels (acknowledge and resolve need --incident, whose dedup key they use)")
	f.BoolVar(&o.drill, "drill", false, "a drill's message: only to channels marked drills: true, prefixed [DRILL]")
	f.BoolVar(&o.asJSON, "json", false, "print the deliveries as JSON")
	return c
}

func (a *app) runNotifySend(ctx context.Context, o *notifySendOptions) error {
	if o.action != "" && o.action != notify.ActionTrigger && o.action != notify.ActionAcknowledge && o.action != notify.ActionResolve {
		return usagef("--action %q: give trigger, acknowledge or resolve", o.action)
	}
	if o.message == "" && o.incident == "" {
		return usagef("nothing to send: give --message TEXT, or --incident ID to send the update drafted from it")
	}
	if (o.action == notify.ActionAcknowledge || o.action == notify.ActionResolve) && o.incident == "" {
		return usagef("--action %s needs --incident: PagerDuty finds the event by the incident's dedup key", o.action)
	}
	all, err := a.notifyChannels()
	if err != nil {
		return err
	}
	var j *checklists.Journal
	if o.incident != "" {
		state := checklists.StateDir(a.stateDir, a.getenv)
		if o.incident == "latest" {
			j, err = checklists.OpenLatest(state)
		} else {
			j, err = checklists.Resume(state, o.incident)
		}
		if errors.Is(err, checklists.ErrJournalBusy) {
			return fmt.Errorf("%w: send the update from that console", err)
		}
		if err != nil {
			return err
		}
		defer j.Close()
	}
	run := incident.New(j, checklists.Operator(a.getenv), o.drill)
	m := notify.Message{Drill: run.Drill(), Kind: notify.KindUpdate, Action: o.action}
	if host, err := os.Hostname(); err == nil {
		m.Source = host
	}
	if j != nil {
		rb, _, _ := loadRunbook(a)
		var path []checklists.Escalation
		if rb != nil {
			path = rb.Escalation
		}
		m = incident.Draft(j.Incident(), path, time.Now(), incident.OnUpdate)
		m.Action = o.action
	}
	switch o.message {
	case "":
	case "-":
		data, err := io.ReadAll(io.LimitReader(a.stdin, 64<<10))
		if err != nil {
			return err
		}
		m.Text = strings.TrimSpace(string(data))
		m.Subject = ""
	default:
		m.Text, m.Subject = o.message, ""
	}
	if o.subject != "" {
		m.Subject = o.subject
	}
	if strings.TrimSpace(m.Text) == "" && strings.TrimSpace(m.Subject) == "" {
		return usagef("the message is empty")
	}
	var chans []*notify.Channel
	switch {
	case len(o.channels) > 0:
		if chans, err = pickChannels(all, o.channels); err != nil {
			return err
		}
	case o.action == notify.ActionAcknowledge || o.action == notify.ActionResolve || o.action == notify.ActionTrigger:
		for _, c := range all {
			if c.Type == notify.TypePagerDuty && (!run.Drill() || c.Drills) {
				chans = append(chans, c)
			}
		}
	default:
		chans = incident.UpdateRecipients(all, run.Drill())
	}
	if len(chans) == 0 {
		what := "taking updates"
		if o.action != "" {
			what = "of type pagerduty"
		}
		if run.Drill() {
			what += " and marked drills: true"
		}
		return usagef("no notify channel %s is configured (see drconsole config)", what)
	}
	var got []notify.Delivery
	for d := range run.Notify(ctx, &notify.Sender{}, chans, m, 0) {
		got = append(got, d)
	}
	if err := a.printDeliveries(chans, got, o.asJSON); err != nil {
		return err
	}
	return run.Err()
}
