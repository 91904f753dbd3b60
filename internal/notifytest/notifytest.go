// Package notifytest starts real servers on 127.0.0.1 for notification tests: an SMTP
// server (go-smtp) with STARTTLS and AUTH, and HTTP receivers that check Slack's, Discord's
// and PagerDuty Events v2's payloads the way those services do. Both stop with the test.
package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Cert is a self-signed certificate for 127.0.0.1 and localhost, and the PEM file a
// client names as ca_file to trust it.
type Cert struct {
	TLS    tls.Certificate
	CAFile string
}

// NewCert makes a self-signed certificate valid for an hour.
func NewCert(t testing.TB) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "notifytest"},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return Cert{TLS: pair, CAFile: file}
}

// Mail is one message the SMTP server accepted.
type Mail struct {
	From string
	To   []string
	Data string
	TLS  bool   // the message came over TLS
	User string // who authenticated
}

// SMTPOptions say how the server behaves.
type SMTPOptions struct {
	Cert     *Cert  // offer STARTTLS with it (nil: no TLS)
	Implicit bool   // with Cert: TLS from the first byte (port 465 style) instead of STARTTLS
	Username string // require AUTH PLAIN with these credentials ("" : no AUTH)
	Password string
}

// SMTPServer is a running SMTP server.
type SMTPServer struct {
	Addr string // 127.0.0.1:port

	opts     SMTPOptions
	mu       sync.Mutex
	mails    []Mail
	authFail int
	tempFail int
}

// StartSMTP starts an SMTP server on 127.0.0.1; it stops when the test ends.
func StartSMTP(t testing.TB, o SMTPOptions) *SMTPServer {
	t.Helper()
	s := &SMTPServer{opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests do
	srv.AllowInsecureAuth = o.Cert == nil     // with TLS on offer, credentials only over it
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.Cert != nil {
		cfg := &tls.Config{Certificates: []tls.Certificate{o.Cert.TLS}}
		if o.Implicit {
			l = tls.NewListener(l, cfg)
		} else {
			srv.TLSConfig = cfg
		}
	}
	s.Addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// FailNext makes the next n messages fail with 451 (a temporary failure).
func (s *SMTPServer) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tempFail = n
}

// Mails are the messages accepted so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// AuthFailures counts refused logins.
func (s *SMTPServer) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

type session struct {
	srv  *SMTPServer
	conn *smtp.Conn
	user string
	mail Mail
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.srv.opts.Username || pass != s.srv.opts.Password {
			s.srv.mu.Lock()
			s.srv.authFail++
			s.srv.mu.Unlock()
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.opts.Username != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.mail = Mail{From: from, User: s.user}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mail.To = append(s.mail.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.mail.TLS = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.tempFail > 0 {
		s.srv.tempFail--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.mail.Data = string(b)
	s.srv.mails = append(s.srv.mails, s.mail)
	return nil
}

func (s *session) Reset()        { s.mail = Mail{} }
func (s *session) Logout() error { return nil }

// Receiver kinds: which service's checks a receiver applies.
const (
	Slack     = "slack"
	Discord   = "discord"
	PagerDuty = "pagerduty"
	Webhook   = "webhook"
)

// Received is one request a receiver got, and what was wrong with it ("" when nothing).
type Received struct {
	Path    string
	Body    map[string]any
	Problem string
	Status  int // what the receiver answered
}

// Receiver is an HTTP endpoint that answers as the service of its kind would.
type Receiver struct {
	// URL is the hook's full URL, secret path included (for PagerDuty, the enqueue URL).
	URL string
	// Secret is the webhook's secret path part, or PagerDuty's routing key.
	Secret string

	kind  string
	mu    sync.Mutex
	got   []Received
	fails []int
	stall time.Duration
}

// StartReceiver starts a receiver of kind on 127.0.0.1, plain HTTP, or HTTPS with cert;
// secret is the path token of a webhook, the routing key of PagerDuty.
func StartReceiver(t testing.TB, kind, secret string, cert *Cert) *Receiver {
	t.Helper()
	r := &Receiver{kind: kind, Secret: secret}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	switch kind {
	case PagerDuty:
		r.URL = srv.URL + "/v2/enqueue"
	case Slack:
		r.URL = srv.URL + "/services/" + secret
	case Discord:
		r.URL = srv.URL + "/api/webhooks/" + secret
	default:
		r.URL = srv.URL + "/hook/" + secret
	}
	return r
}

// FailNext answers the next requests with these status codes, one each, before the rest.
func (r *Receiver) FailNext(codes ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fails = append(r.fails, codes...)
}

// Stall makes every answer wait d (a receiver that does not answer in time).
func (r *Receiver) Stall(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stall = d
}

// Got is every request so far.
func (r *Receiver) Got() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.got...)
}

// Delivered are the requests answered with success, each checked and found right.
func (r *Receiver) Delivered() []Received {
	var out []Received
	for _, g := range r.Got() {
		if g.Status < 300 {
			out = append(out, g)
		}
	}
	return out
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	// The body first: only then does the server notice a client that gave up.
	data, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	stall := r.stall
	r.mu.Unlock()
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-req.Context().Done():
			return
		}
	}
	rec := Received{Path: req.URL.Path}
	var body map[string]any
	if err := json.Unmarshal(data, &body); err != nil {
		rec.Problem = "body is not a JSON object: " + err.Error()
	}
	rec.Body = body
	if rec.Problem == "" {
		rec.Problem = r.check(req, body)
	}
	r.mu.Lock()
	status := 0
	if len(r.fails) > 0 {
		status, r.fails = r.fails[0], r.fails[1:]
	}
	r.mu.Unlock()
	switch {
	case status != 0:
		http.Error(w, http.StatusText(status), status)
	case rec.Problem != "":
		status = http.StatusBadRequest
		if r.kind == PagerDuty {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": []string{rec.Problem}})
		} else {
			http.Error(w, "invalid_payload", status)
		}
	case r.kind == PagerDuty:
		status = http.StatusAccepted
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]})
	case r.kind == Discord:
		status = http.StatusNoContent
		w.WriteHeader(status)
	default:
		status = http.StatusOK
		io.WriteString(w, "ok")
	}
	rec.Status = status
	r.mu.Lock()
	r.got = append(r.got, rec)
	r.mu.Unlock()
}

// check applies the service's rules to a request: the ones that service enforces, and
// the exact shape drconsole promises.
func (r *Receiver) check(req *http.Request, body map[string]any) string {
	if req.Method != http.MethodPost {
		return "method " + req.Method
	}
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return "content type " + ct
	}
	str := func(k string) (string, bool) { s, ok := body[k].(string); return s, ok }
	switch r.kind {
	case Slack:
		if req.URL.Path != "/services/"+r.Secret {
			return "wrong hook path " + req.URL.Path
		}
		if err := onlyKeys(body, "text"); err != nil {
			return err.Error()
		}
		if s, ok := str("text"); !ok || strings.TrimSpace(s) == "" {
			return "text is missing or empty"
		}
	case Discord:
		if req.URL.Path != "/api/webhooks/"+r.Secret {
			return "wrong hook path " + req.URL.Path
		}
		if err := onlyKeys(body, "content", "allowed_mentions"); err != nil {
			return err.Error()
		}
		s, ok := str("content")
		switch {
		case !ok || strings.TrimSpace(s) == "":
			return "content is missing or empty"
		case utf8.RuneCountInString(s) > 2000:
			return fmt.Sprintf("content is %d characters, over Discord's 2000", utf8.RuneCountInString(s))
		}
	case PagerDuty:
		if req.URL.Path != "/v2/enqueue" {
			return "path " + req.URL.Path + ", not /v2/enqueue"
		}
		if k, _ := str("routing_key"); k != r.Secret {
			return "wrong routing_key"
		}
		action, _ := str("event_action")
		dedup, _ := str("dedup_key")
		switch action {
		case "trigger":
			p, ok := body["payload"].(map[string]any)
			if !ok {
				return "trigger without payload"
			}
			sum, _ := p["summary"].(string)
			src, _ := p["source"].(string)
			sev, _ := p["severity"].(string)
			switch {
			case sum == "" || utf8.RuneCountInString(sum) > 1024:
				return "payload.summary missing or over 1024 characters"
			case src == "":
				return "payload.source missing"
			case sev != "critical" && sev != "error" && sev != "warning" && sev != "info":
				return "payload.severity " + sev
			}
		case "acknowledge", "resolve":
			if dedup == "" {
				return action + " without dedup_key"
			}
		default:
			return "event_action " + action
		}
		if err := onlyKeys(body, "routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links", "images"); err != nil {
			return err.Error()
		}
	default:
		if s, ok := str("text"); !ok || s == "" {
			return "text is missing"
		}
	}
	return ""
}

func onlyKeys(body map[string]any, allowed ...string) error {
	var extra []string
	for k := range body {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		return errors.New("unexpected keys " + strings.Join(extra, ", "))
	}
	return nil
}
