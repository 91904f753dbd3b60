package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Sender delivers messages with a timeout on each attempt and a bounded number of
// attempts, waiting longer after each failure. A failure that another attempt cannot cure
// (a 4xx answer, bad credentials, a certificate not trusted) is not retried.
type Sender struct {
	Timeout  time.Duration // one attempt; default DefaultTimeout
	Attempts int           // attempts in all; default DefaultAttempts
	Backoff  time.Duration // wait after the first failure, doubled after each; default DefaultBackoff
}

// The defaults: the worst case, a channel that never answers, takes 4×10s of attempts and
// 1+2+4s of waits, 47s, in the background.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultAttempts = 4
	DefaultBackoff  = time.Second
)

// ErrNotDelivered marks a message that did not reach a channel.
var ErrNotDelivered = errors.New("not delivered")

// ErrNoDrills: a drill's message never goes to a channel not marked for drills.
var ErrNoDrills = errors.New("this channel takes no drill messages (drills: true in its config)")

// DeliveryError is why a message did not reach a channel, without the channel's secrets.
type DeliveryError struct {
	Channel string
	Reason  string
}

func (e *DeliveryError) Error() string { return "not delivered to " + e.Channel + ": " + e.Reason }
func (e *DeliveryError) Unwrap() error { return ErrNotDelivered }

// Reason is why err, a Delivery's error, happened, without naming the channel.
func Reason(err error) string {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Reason
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// permanent marks a failure that another attempt would only repeat.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func permanentf(format string, args ...any) error { return permanent{fmt.Errorf(format, args...)} }

// IsPermanent reports whether err is a failure retrying cannot cure.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Send delivers m on ch, retrying as configured; it returns when the message is delivered,
// every attempt failed, or ctx ended. It never panics or blocks past its attempts.
func (s *Sender) Send(ctx context.Context, ch *Channel, m Message) Delivery {
	timeout, attempts, backoff := s.Timeout, s.Attempts, s.Backoff
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	d := Delivery{Channel: ch.Name, Type: ch.Type}
	start := time.Now()
	fail := func(err error) Delivery {
		d.Took = time.Since(start)
		d.Err = &DeliveryError{Channel: ch.Name, Reason: ch.Redact(err.Error())}
		return d
	}
	switch {
	case ch.Err != nil:
		return fail(ch.Err)
	case ch.t == nil:
		return fail(errors.New("the channel is not configured"))
	case m.Drill && !ch.Drills:
		return fail(ErrNoDrills)
	}
	m = m.Prepared()
	var err error
	for d.Attempts < attempts {
		if d.Attempts > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fail(fmt.Errorf("%v, then stopped: %v", err, context.Cause(ctx)))
			case <-t.C:
			}
			backoff *= 2
		}
		d.Attempts++
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = ch.t.deliver(actx, m)
		if err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s", timeout)
		}
		cancel()
		if err == nil {
			d.Took = time.Since(start)
			return d
		}
		if IsPermanent(err) || ctx.Err() != nil {
			break
		}
	}
	if d.Attempts > 1 {
		err = fmt.Errorf("%v (after %d attempts)", err, d.Attempts)
	}
	return fail(err)
}

// netErr says what a network error means without the URL it carries (a webhook's URL is
// its secret), and marks the failures that another attempt will not cure.
func netErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &invalid):
		return permanentf("TLS refused: the server's certificate is not trusted (%v); ca_file names extra CAs to trust", err)
	case errors.As(err, &recordErr):
		return permanentf("TLS refused: the server does not speak TLS on that port (%v)", err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return permanentf("TLS refused by the server: %v", err)
	}
	return err
}
