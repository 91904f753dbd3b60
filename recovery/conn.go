package recovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Conn is how to reach the target server, resolved from the settings operators already
// have. Database is the database to restore; empty means "the archive's own".
type Conn struct {
	Host     string
	Port     uint16
	User     string
	Password string
	Database string
	SSLMode  string // passed to libpq tools as PGSSLMODE when set
	Source   string // where the settings came from, e.g. "--db-url", "DB_* variables"
	// PasswordInArgs: the password was given on the command line (--db-url), where any
	// user of the machine can read it in the process list.
	PasswordInArgs bool

	cfg *pgconn.Config
}

// ResolveConn reads the connection settings in order: dbURL (--db-url), then the
// runbook's DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME, then DATABASE_URL, then libpq's
// PG* variables and ~/.pgpass. The database is left empty unless one was named
// somewhere: libpq's default (the user's name) is never a restore target.
func ResolveConn(dbURL string, getenv func(string) string) (*Conn, error) {
	var (
		connString, source, dbName string
	)
	switch {
	case dbURL != "":
		connString, source = dbURL, "--db-url"
		dbName = databaseIn(dbURL)
	case getenv("DB_HOST") != "" || getenv("DB_NAME") != "" || getenv("DB_USER") != "" || getenv("DB_PORT") != "":
		var kv []string
		for _, p := range [][2]string{{"host", "DB_HOST"}, {"port", "DB_PORT"}, {"user", "DB_USER"}, {"password", "DB_PASSWORD"}, {"dbname", "DB_NAME"}} {
			if v := getenv(p[1]); v != "" {
				kv = append(kv, p[0]+"="+quoteConnValue(v))
			}
		}
		connString, source, dbName = strings.Join(kv, " "), "DB_* variables", getenv("DB_NAME")
	case getenv("DATABASE_URL") != "":
		connString, source = getenv("DATABASE_URL"), "DATABASE_URL"
		dbName = databaseIn(connString)
	default:
		source, dbName = "PG* variables", getenv("PGDATABASE")
	}
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("connection settings from %s: %s", source, parseErr(err, connString))
	}
	c := &Conn{Host: cfg.Host, Port: cfg.Port, User: cfg.User, Password: cfg.Password, Database: dbName, Source: source, cfg: cfg}
	c.PasswordInArgs = source == "--db-url" && cfg.Password != ""
	c.SSLMode = sslModeIn(connString)
	if c.SSLMode == "" {
		c.SSLMode = getenv("PGSSLMODE")
	}
	return c, nil
}

// databaseIn is the database a URL or keyword string names, or "".
func databaseIn(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			return db
		}
		return u.Query().Get("dbname")
	}
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "dbname="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

func sslModeIn(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Query().Get("sslmode")
	}
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "sslmode="); ok {
			return v
		}
	}
	return ""
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Server is host:port (or the socket directory) for messages; never the password.
func (c *Conn) Server() string {
	if strings.HasPrefix(c.Host, "/") {
		return fmt.Sprintf("%s (socket, port %d)", c.Host, c.Port)
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// With returns the settings for another database on the same server.
func (c *Conn) With(database string) *Conn {
	d := *c
	d.Database = database
	return &d
}

// Connect opens a connection to database on the server.
func (c *Conn) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	return c.connect(ctx, database, "")
}

// connect opens a connection named appName in pg_stat_activity ("" keeps the default), so
// that an operator looking at the server sees what a drconsole session is doing.
func (c *Conn) connect(ctx context.Context, database, appName string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Config = *c.cfg.Copy()
	cfg.Database = database
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if appName != "" {
		if cfg.RuntimeParams == nil {
			cfg.RuntimeParams = map[string]string{}
		}
		cfg.RuntimeParams["application_name"] = appName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectErr(c, database, err)
	}
	return conn, nil
}

// connectErr says in one line why the server or database could not be reached.
func connectErr(c *Conn, database string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "3D000":
			return fmt.Errorf("%w: database %q does not exist on %s", ErrNoDatabase, database, c.Server())
		case "28P01", "28000":
			return fmt.Errorf("%w: %s refused user %q: %s", ErrDatabase, c.Server(), c.User, pe.Message)
		}
		return fmt.Errorf("%w: %s: %s", ErrDatabase, c.Server(), pe.Message)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: cannot connect to %s as %q: %s", ErrDatabase, c.Server(), c.User, redactErr(err))
}

// Env is the libpq environment that points a PostgreSQL tool (pg_restore, pg_dump, a
// runbook's psql) at database on this server: the password travels in the environment,
// never on a command line.
func (c *Conn) Env(database string) []string {
	env := []string{
		"PGHOST=" + c.Host,
		"PGPORT=" + strconv.Itoa(int(c.Port)),
		"PGUSER=" + c.User,
		"PGDATABASE=" + database,
		"PGAPPNAME=drconsole",
		"PGCONNECT_TIMEOUT=15",
	}
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	if c.SSLMode != "" {
		env = append(env, "PGSSLMODE="+c.SSLMode)
	}
	return env
}

// toolEnv is the whole environment of a PostgreSQL tool drconsole runs: what it needs to
// find its libraries and reach the server (TLS and Kerberos settings, the password file)
// and nothing else. drconsole's own secrets (DRCONSOLE_PASSPHRASE, DB_PASSWORD, AWS keys)
// never reach a child, and a stray PGDATABASE or PGSERVICE can never point one at the live
// database. Messages are in English, so that the few drconsole reads are understood.
func (c *Conn) toolEnv(database string) []string {
	return append(libpqFreeEnviron(), c.Env(database)...)
}

// libpqFreeEnviron is the part of toolEnv that does not depend on the server: the kept
// variables of our environment, with every libpq variable we set ourselves left out.
func libpqFreeEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PGSSLMODE" { // Conn.Env sets it when the settings name one
			continue
		}
		if toolEnvKeep[k] || strings.HasPrefix(k, "PGSSL") || strings.HasPrefix(k, "PGGSS") || strings.HasPrefix(k, "KRB5") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

var toolEnvKeep = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true, "TZ": true,
	"PGPASSFILE": true, "PGKRBSRVNAME": true, "PGREQUIREPEER": true, "PGCHANNELBINDING": true,
	"PGREQUIREAUTH": true, "LD_LIBRARY_PATH": true,
}

// libpqDatabase is the value for a libpq tool's --dbname that names exactly one database:
// a connection string with the name quoted, so that a name containing "=" or starting
// with "postgres://" is never taken for connection settings of its own.
func libpqDatabase(name string) string {
	return "dbname=" + quoteConnValue(name)
}

// redactErr strips anything that looks like a password from a library's error text.
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "password="); i >= 0 {
		end := strings.IndexAny(s[i:], " )")
		if end < 0 {
			end = len(s) - i
		}
		s = s[:i] + "password=xxxxx" + s[i+end:]
	}
	if u := strings.Index(s, "://"); u >= 0 {
		if at := strings.LastIndex(s[u:], "@"); at > 0 {
			if colon := strings.Index(s[u+3:u+at], ":"); colon >= 0 {
				s = s[:u+3+colon] + ":xxxxx" + s[u+at:]
			}
		}
	}
	return s
}

// parseErr says why connection settings do not parse without echoing them: a malformed
// URL is exactly where a library's best-effort redaction can miss part of a password.
func parseErr(err error, connString string) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// "cannot parse `SETTINGS`: WHY": keep only WHY.
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	for _, secret := range passwordsIn(connString) {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
	}
	return redactErr(errors.New(msg))
}

// passwordsIn guesses the password in a URL or keyword/value string that may not parse.
func passwordsIn(s string) []string {
	var out []string
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				out = append(out, pw)
			}
		}
	}
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "password="); ok && strings.Trim(v, "'") != "" {
			out = append(out, strings.Trim(v, "'"))
		}
	}
	return out
}

// OperatorEnv is the environment for a runbook command the operator runs from drconsole:
// theirs, as their shell has it, without drconsole's own secrets.
func OperatorEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "DRCONSOLE_PASSPHRASE" {
			env = append(env, kv)
		}
	}
	return env
}
