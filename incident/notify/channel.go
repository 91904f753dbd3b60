// Package notify tells people: status updates and pages to Slack, Discord, generic JSON
// webhooks, e-mail over SMTP and PagerDuty, with bounded retries and no secret in any error.
package notify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Channel types, as the config file names them.
const (
	TypeSlack     = "slack"
	TypeDiscord   = "discord"
	TypeWebhook   = "webhook"
	TypeSMTP      = "smtp"
	TypePagerDuty = "pagerduty"
)

// Types lists the channel types in the order the docs give them.
var Types = []string{TypeSlack, TypeDiscord, TypeWebhook, TypeSMTP, TypePagerDuty}

// PagerDutyURL is the Events API v2 endpoint (url: replaces it, e.g. for an EU account).
const PagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Redacted replaces a secret wherever one would have been shown.
const Redacted = "[REDACTED]"

// Config is one channel as the config file's notify: list writes it. A secret (url,
// password, routing_key) may be given in the file or, better, named by an environment
// variable (url_env, password_env, routing_key_env).
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`

	// slack, discord, webhook; pagerduty (default PagerDutyURL)
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// pagerduty
	RoutingKey    string `yaml:"routing_key"`
	RoutingKeyEnv string `yaml:"routing_key_env"`
	// smtp
	Host        string   `yaml:"host"` // host:port; port 465 means tls, otherwise starttls
	TLS         string   `yaml:"tls"`  // starttls, tls or none (none only to a loopback address)
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	PasswordEnv string   `yaml:"password_env"`
	From        string   `yaml:"from"`
	To          []string `yaml:"to"`
	// https webhooks and smtp: a PEM file of CAs to trust besides the system's
	CAFile string `yaml:"ca_file"`

	// Drills: drill messages go to this channel (and only to channels that say so).
	Drills bool `yaml:"drills"`
	// Updates: status updates go here; default true, except for pagerduty.
	Updates *bool `yaml:"updates"`
	// Escalation: the escalation levels (runbook roles) this channel reaches when one
	// falls due; "all" for every level. Default: all for pagerduty, none otherwise.
	Escalation []string `yaml:"escalation"`
	// Alert: the runbook alert channel this one is (Email, Slack, Discord, PagerDuty).
	Alert string `yaml:"alert"`
}

// Channel is a configured channel ready to send. Err says why it cannot be used (a
// secret's environment variable is not set, …): sending to it fails with Err, at once.
type Channel struct {
	Name       string
	Type       string
	Drills     bool
	Updates    bool
	Escalation []string
	Alert      string
	// Where is where messages go, with the secrets replaced: what config and errors show.
	Where string
	// From says where the secret came from: "url from $SLACK_WEBHOOK_URL".
	From string
	Err  error

	secrets []string
	t       transport
}

// transport delivers one message in one attempt.
type transport interface {
	deliver(ctx context.Context, m Message) error
}

// Secrets are the channel's secret values, for a journal to register so that it never
// writes them whatever the text around them.
func (c *Channel) Secrets() []string { return append([]string(nil), c.secrets...) }

// Redact replaces the channel's secrets in s.
func (c *Channel) Redact(s string) string {
	for _, sec := range c.secrets {
		s = strings.ReplaceAll(s, sec, Redacted)
	}
	return s
}

// Reaches reports whether the channel is paged or mailed when the escalation level of
// role falls due.
func (c *Channel) Reaches(role string) bool {
	for _, r := range c.Escalation {
		if strings.EqualFold(r, "all") || strings.EqualFold(strings.TrimSpace(r), strings.TrimSpace(role)) {
			return true
		}
	}
	return false
}

// String names the channel for lists: "ops-slack (slack)".
func (c *Channel) String() string { return c.Name + " (" + c.Type + ")" }

// addSecret registers a secret value and, for a URL, the parts of it that carry the secret
// (its path and query: Slack's and Discord's tokens are in the path).
func (c *Channel) addSecret(s string, isURL bool) {
	if len(s) < 4 {
		return
	}
	c.secrets = append(c.secrets, s)
	if isURL {
		if u, err := url.Parse(s); err == nil {
			if len(u.Path) > 1 {
				c.secrets = append(c.secrets, u.Path, strings.TrimPrefix(u.Path, "/"))
				if u.RawPath != "" {
					c.secrets = append(c.secrets, u.RawPath)
				}
			}
			if u.RawQuery != "" {
				c.secrets = append(c.secrets, u.RawQuery)
			}
			if p, ok := u.User.Password(); ok && len(p) >= 4 {
				c.secrets = append(c.secrets, p)
			}
		}
	}
	// Longest first, so that a secret holding another is replaced whole.
	sort.SliceStable(c.secrets, func(i, j int) bool { return len(c.secrets[i]) > len(c.secrets[j]) })
}

// redactedURL shows a URL whose path or query is secret: scheme and host only.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Redacted
	}
	return u.Scheme + "://" + u.Host + "/" + Redacted
}

// Parse reads the config file's notify: list (node may be nil or empty: no channels).
// file names the file in messages, which give line numbers; getenv gives the secrets named
// by *_env fields. A mistake in the list's shape (an unknown field, a missing name or type,
// a name used twice) is an error; a channel that is well formed but cannot be used, such
// as one whose secret's variable is not set, is returned with Err set, so the others work.
func Parse(node *yaml.Node, file string, getenv func(string) string) ([]*Channel, error) {
	if node == nil || node.Kind == 0 || (node.Kind == yaml.ScalarNode && node.Tag == "!!null") {
		return nil, nil
	}
	at := func(n *yaml.Node) string {
		if file == "" {
			return fmt.Sprintf("line %d", n.Line)
		}
		return fmt.Sprintf("%s:%d", file, n.Line)
	}
	if node.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: notify: is a list of channels ({name, type, …})", at(node))
	}
	known := map[string]bool{}
	for _, f := range yamlFields(Config{}) {
		known[f] = true
	}
	var errs []string
	var out []*Channel
	seen := map[string]bool{}
	for _, item := range node.Content {
		if item.Kind != yaml.MappingNode {
			errs = append(errs, at(item)+": a notify channel is a mapping ({name, type, …})")
			continue
		}
		bad := false
		for i := 0; i+1 < len(item.Content); i += 2 {
			if k := item.Content[i]; !known[k.Value] {
				errs = append(errs, fmt.Sprintf("%s: field %s not found in a notify channel", at(k), k.Value))
				bad = true
			}
		}
		var cfg Config
		if err := item.Decode(&cfg); err != nil {
			errs = append(errs, at(item)+": "+strings.TrimPrefix(err.Error(), "yaml: "))
			continue
		}
		if bad {
			continue
		}
		where := fmt.Sprintf("%s: notify channel %q", at(item), cfg.Name)
		switch {
		case cfg.Name == "":
			errs = append(errs, at(item)+": a notify channel has no name")
			continue
		case seen[cfg.Name]:
			errs = append(errs, where+": the name is used twice")
			continue
		}
		seen[cfg.Name] = true
		if cfg.CAFile != "" && !filepath.IsAbs(cfg.CAFile) && file != "" {
			cfg.CAFile = filepath.Join(filepath.Dir(file), cfg.CAFile)
		}
		ch, err := New(cfg, getenv)
		if err != nil {
			errs = append(errs, where+": "+err.Error())
			continue
		}
		out = append(out, ch)
	}
	if len(errs) > 0 {
		return out, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

func yamlFields(v any) []string {
	var out []string
	b, _ := yaml.Marshal(v)
	var m map[string]any
	yaml.Unmarshal(b, &m)
	for k := range m {
		out = append(out, k)
	}
	return out
}

// New makes a channel from its configuration. An error is a mistake in the configuration
// itself (an unknown type, an smtp channel with no recipients); a secret that cannot be had
// now is the channel's Err instead.
func New(cfg Config, getenv func(string) string) (*Channel, error) {
	ch := &Channel{Name: cfg.Name, Type: cfg.Type, Drills: cfg.Drills, Alert: cfg.Alert,
		Updates: cfg.Type != TypePagerDuty, Escalation: cfg.Escalation}
	if cfg.Updates != nil {
		ch.Updates = *cfg.Updates
	}
	if cfg.Type == TypePagerDuty && cfg.Escalation == nil {
		ch.Escalation = []string{"all"}
	}
	// secret resolves a secret given in the file (value) or by an environment variable (env).
	var missing []string
	secret := func(field, value, env string) string {
		switch {
		case value != "" && env != "":
			missing = append(missing, fmt.Sprintf("give %s or %s_env, not both", field, field))
		case env != "":
			v := getenv(env)
			if v == "" {
				missing = append(missing, fmt.Sprintf("$%s (%s_env) is not set", env, field))
			} else if ch.From == "" {
				ch.From = fmt.Sprintf("%s from $%s", field, env)
			}
			return v
		case value != "" && ch.From == "":
			ch.From = field + " from the config file"
		}
		return value
	}
	unused := func(fields map[string]bool) error {
		var extra []string
		for name, set := range fields {
			if set {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			return fmt.Errorf("type %s does not take %s", cfg.Type, strings.Join(extra, ", "))
		}
		return nil
	}
	smtpFields := map[string]bool{"host": cfg.Host != "", "tls": cfg.TLS != "", "username": cfg.Username != "",
		"password": cfg.Password != "" || cfg.PasswordEnv != "", "from": cfg.From != "", "to": len(cfg.To) > 0}
	roots, caErr := loadCAs(cfg.CAFile)
	if caErr != nil {
		return nil, caErr
	}
	switch cfg.Type {
	case TypeSlack, TypeDiscord, TypeWebhook:
		if err := unused(merge(smtpFields, map[string]bool{"routing_key": cfg.RoutingKey != "" || cfg.RoutingKeyEnv != ""})); err != nil {
			return nil, err
		}
		if cfg.URL == "" && cfg.URLEnv == "" {
			return nil, fmt.Errorf("type %s needs url_env (or url)", cfg.Type)
		}
		u := secret("url", cfg.URL, cfg.URLEnv)
		ch.addSecret(u, true)
		ch.Where = redactedURL(u)
		if u != "" {
			if err := checkURL(u); err != nil {
				ch.Err = err
			}
		}
		ch.t = &hook{kind: cfg.Type, url: u, client: httpClient(roots)}
	case TypePagerDuty:
		if err := unused(smtpFields); err != nil {
			return nil, err
		}
		if cfg.RoutingKey == "" && cfg.RoutingKeyEnv == "" {
			return nil, errors.New("type pagerduty needs routing_key_env (or routing_key)")
		}
		key := secret("routing_key", cfg.RoutingKey, cfg.RoutingKeyEnv)
		ch.addSecret(key, false)
		u := PagerDutyURL
		if cfg.URL != "" || cfg.URLEnv != "" {
			u = secret("url", cfg.URL, cfg.URLEnv)
		}
		ch.Where = u
		if u != "" {
			if err := checkURL(u); err != nil {
				ch.Err = err
			}
		}
		ch.t = &pagerDuty{url: u, key: key, client: httpClient(roots)}
	case TypeSMTP:
		if err := unused(map[string]bool{"url": cfg.URL != "" || cfg.URLEnv != "", "routing_key": cfg.RoutingKey != "" || cfg.RoutingKeyEnv != ""}); err != nil {
			return nil, err
		}
		m, err := newMailer(cfg, roots)
		if err != nil {
			return nil, err
		}
		if cfg.Password != "" || cfg.PasswordEnv != "" {
			m.password = secret("password", cfg.Password, cfg.PasswordEnv)
			ch.addSecret(m.password, false)
		}
		ch.Where = m.String()
		ch.t = m
	case "":
		return nil, fmt.Errorf("needs a type: %s", strings.Join(Types, ", "))
	default:
		return nil, fmt.Errorf("type %q is not one of %s", cfg.Type, strings.Join(Types, ", "))
	}
	if len(missing) > 0 && ch.Err == nil {
		ch.Err = errors.New(strings.Join(missing, "; "))
	}
	return ch, nil
}

func merge(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = out[k] || v
	}
	return out
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("the url is not an http(s) URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return errors.New("the url is plain http to a host that is not this machine: use https, the URL carries a secret")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}
