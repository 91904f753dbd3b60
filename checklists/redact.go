package checklists

import (
	"regexp"
	"sort"
	"strings"
)

// Redacted replaces a secret wherever the journal would have written it.
const Redacted = "[REDACTED]"

// The journal is read by people who were never given the secrets in it (a second
// responder, the post-mortem), so every string that reaches it goes through redact.
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	// Private keys, armored or PEM, whole blocks (also a block cut off at the end).
	{regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z)`), "[REDACTED PRIVATE KEY]"},
	// Passwords in URLs: postgres://user:secret@host, https://u:p@h.
	{regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):[^\s@/]*@`), "${1}:" + Redacted + "@"},
	// HTTP authorization headers.
	{regexp.MustCompile(`(?i)(authorization\s*[:=]\s*"?(?:bearer|basic|token)?\s*)[^\s"']+`), "${1}" + Redacted},
	// Flags ending in the secret's name: --password X, --passphrase=X (not --passphrase-file).
	{regexp.MustCompile(`(?i)(--?(?:[A-Za-z0-9-]*-)?(?:password|passwd|passphrase|secret|token)(?:\s+|=))("[^"]*"|'[^']*'|[^\s"'-][^\s"']*)`), "${1}" + Redacted},
	// key=value and "key": value, where the key names a secret: PGPASSWORD=…,
	// DB_PASSWORD="…", password=… in a connection string, "password": "…" in JSON,
	// X-Amz-Signature=… in a presigned URL, AWS_SECRET_ACCESS_KEY=….
	{regexp.MustCompile(`(?i)([A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|signature|credentials?)[A-Za-z0-9_.-]*["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"',;&}]+)`), "${1}" + Redacted},
}

// minSecretLen is the shortest registered secret replaced literally: replacing every
// "a" of a text would make it unreadable, and the patterns still catch short ones.
const minSecretLen = 4

// redactor removes secrets from text: by pattern, and by the literal values the caller
// registered (a password typed at a prompt has no pattern around it).
type redactor struct {
	secrets []string // longest first, so that a secret containing another goes whole
}

func (r *redactor) add(secret string) {
	if len(secret) < minSecretLen {
		return
	}
	for _, s := range r.secrets {
		if s == secret {
			return
		}
	}
	r.secrets = append(r.secrets, secret)
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

func (r *redactor) redact(s string) string {
	if s == "" {
		return s
	}
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, Redacted)
	}
	for _, p := range secretPatterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	return s
}

// Redact removes what looks like a secret from s: passwords in URLs and key=value
// pairs, passphrase and password flags, tokens, private key blocks. The journal does
// this for every event; it is exported for the places that print commands elsewhere.
func Redact(s string) string {
	var r redactor
	return r.redact(s)
}
