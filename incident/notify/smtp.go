package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
)

// mailer sends e-mail over SMTP: STARTTLS (the default), TLS from the first byte (port
// 465), or, to this machine only, plain. It authenticates with PLAIN when a username is
// given, and never sends a password unencrypted (net/smtp refuses to).
type mailer struct {
	addr     string // host:port
	host     string
	mode     string // starttls, tls, none
	username string
	password string
	from     string
	to       []string
	roots    *x509.CertPool
}

var _ transport = (*mailer)(nil)

func newMailer(cfg Config, roots *x509.CertPool) (*mailer, error) {
	if cfg.Host == "" {
		return nil, errors.New("type smtp needs host (host:port)")
	}
	addr := cfg.Host
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "587"
		addr = net.JoinHostPort(host, port)
	}
	mode := cfg.TLS
	if mode == "" {
		mode = "starttls"
		if port == "465" {
			mode = "tls"
		}
	}
	switch mode {
	case "starttls", "tls":
	case "none":
		if !isLoopback(host) {
			return nil, errors.New("tls: none is for a relay on this machine only; use starttls or tls")
		}
	default:
		return nil, fmt.Errorf("tls %q is not starttls, tls or none", mode)
	}
	if cfg.From == "" {
		return nil, errors.New("type smtp needs from (the sender's address)")
	}
	if _, err := mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("from %q is not an e-mail address", cfg.From)
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("type smtp needs to (a list of addresses)")
	}
	var to []string
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to %q is not an e-mail address", t)
		}
		to = append(to, a.Address)
	}
	if (cfg.Password != "" || cfg.PasswordEnv != "") && cfg.Username == "" {
		return nil, errors.New("a password needs a username")
	}
	return &mailer{addr: addr, host: host, mode: mode, username: cfg.Username, from: cfg.From, to: to, roots: roots}, nil
}

// String is where the mail goes, without the password.
func (m *mailer) String() string {
	s := fmt.Sprintf("smtp://%s (%s)", m.addr, m.mode)
	if m.username != "" {
		s += " as " + m.username
	}
	return s + " to " + strings.Join(m.to, ", ")
}

func (m *mailer) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: m.host, RootCAs: m.roots, MinVersion: tls.VersionTLS12}
}

func (m *mailer) deliver(ctx context.Context, msg Message) (err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return netErr(err)
	}
	// net/smtp knows no context: a deadline on the connection, and closing it when ctx
	// ends, keep an attempt within its timeout whatever the server does.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
	}()
	if m.mode == "tls" {
		tc := tls.Client(conn, m.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return netErr(err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		conn.Close()
		return smtpErr("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return smtpErr("EHLO", err)
	}
	if m.mode == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanentf("TLS refused: the server does not offer STARTTLS, and the message (and password) are not sent in clear; tls: tls if it wants TLS from the start")
		}
		if err := c.StartTLS(m.tlsConfig()); err != nil {
			return netErr(smtpErr("STARTTLS", err))
		}
	}
	if m.username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return permanentf("the server offers no AUTH, and a username is configured")
		}
		if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
			return smtpErr("AUTH", err)
		}
	}
	if err := c.Mail(m.from); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	for _, t := range m.to {
		if err := c.Rcpt(t); err != nil {
			return smtpErr("RCPT TO "+t, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	if _, err := w.Write(m.compose(msg)); err != nil {
		return smtpErr("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("DATA", err)
	}
	c.Quit()
	return nil
}

// smtpErr says which command failed; a 5xx answer (bad credentials, a refused address) is
// permanent, a 4xx one is worth another attempt.
func smtpErr(cmd string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		msg := fmt.Sprintf("%s: %d %s", cmd, te.Code, te.Msg)
		if te.Code == 535 || te.Code == 534 {
			msg += " (check username and password)"
		}
		if te.Code >= 500 {
			return permanentf("%s", msg)
		}
		return errors.New(msg)
	}
	if IsPermanent(err) {
		return err
	}
	if strings.Contains(err.Error(), "unencrypted connection") || strings.Contains(err.Error(), "wrong host name") {
		return permanentf("%s: %v", cmd, err)
	}
	return fmt.Errorf("%s: %w", cmd, netErr(err))
}

func helloName() string {
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		return h
	}
	return "localhost"
}

// compose writes the e-mail: headers (the subject encoded for any language) and the body
// as quoted-printable UTF-8.
func (m *mailer) compose(msg Message) []byte {
	var b bytes.Buffer
	id := make([]byte, 12)
	rand.Read(id)
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.from)
	h("To", strings.Join(m.to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", msg.Subject))
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(id)+"@drconsole>")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	if msg.Incident != "" {
		h("X-Drconsole-Incident", msg.Incident)
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := msg.Text
	if strings.TrimSpace(body) == "" {
		body = msg.Subject
	}
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}
