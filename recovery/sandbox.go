package recovery

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"drconsole/recovery/pgarchive"
)

// A backup is untrusted input, and its SQL is code: a DO block, a CHECK constraint's
// function run by every COPY row, dblink, COPY … TO PROGRAM, ALTER ROLE. Run as the
// superuser drconsole connects as, any of it could act outside the scratch database —
// on the live database, on the server's files, on its roles — before a signature
// checked at the end of the stream could object. So a restore loads the backup as a role
// of its own that has no privilege but owning the scratch database: the sandbox. It can
// log in only with a password drconsole made up (stored on the server as a SCRAM
// verifier, so no log or statistics view ever holds it), is marked on the server like
// the databases drconsole makes, and is dropped when the restore ends. What only a
// superuser may do — install an extension that is not trusted, set the owners the backup
// names, its default privileges — drconsole does itself, from the archive's table of
// contents, never by running the backup's text as a superuser.

// RoleSandbox marks the role a restore loads a backup as.
const RoleSandbox = "sandbox"

// sandboxPrefix starts every sandbox role's name.
const sandboxPrefix = "drconsole_load_"

// sandbox is a restore's loading role and how to connect as it.
type sandbox struct {
	role string
	conn *Conn // the target server, as role
}

// ErrSandbox: the server does not let drconsole load as a role without privileges.
var ErrSandbox = fmt.Errorf("%w: cannot load the backup as a role without privileges", ErrPreflight)

// createSandbox makes the loading role, marked, and proves it can log in; on any error
// nothing is left. admin is the plan's maintenance connection.
func (p *Plan) createSandbox(ctx context.Context, admin *pgx.Conn) (*sandbox, error) {
	var tag [6]byte
	rand.Read(tag[:])
	role := sandboxPrefix + hex.EncodeToString(tag[:])
	var secret [24]byte
	rand.Read(secret[:])
	password := hex.EncodeToString(secret[:])
	verifier, err := scramVerifier(password)
	if err != nil {
		return nil, err
	}
	ident := pgx.Identifier{role}.Sanitize()
	err = pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
		// The marker goes in with the role, in one transaction: no kill leaves it unmarked.
		// It may log in for a week at most, whatever becomes of drconsole.
		stmts := []string{
			fmt.Sprintf("CREATE ROLE %s LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %s VALID UNTIL %s",
				ident, quoteLiteral(verifier), quoteLiteral(p.now.Add(7*24*time.Hour).Format(time.RFC3339))),
			"COMMENT ON ROLE " + ident + " IS " + escapeLiteral(p.marker(RoleSandbox).comment()),
		}
		var super bool
		if err := tx.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
			return err
		}
		if !super {
			// CREATE DATABASE … OWNER and REASSIGN OWNED need the connecting role to be a
			// member of the role.
			stmts = append(stmts, "GRANT "+ident+" TO CURRENT_USER")
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			return nil, fmt.Errorf("%w: role %q may not create roles (%s): grant it CREATEROLE, or, for a backup you trust, load it as %q with --trust-backup", ErrSandbox, p.opts.Conn.User, pe.Message, p.opts.Conn.User)
		}
		return nil, fmt.Errorf("%w: creating the loading role: %v", ErrDatabase, pgMessage(err))
	}
	sb := &sandbox{role: role}
	sb.conn, err = p.sandboxLogin(ctx, role, password)
	if err != nil {
		if derr := dropSandbox(p.opts.Conn, role); derr != nil {
			err = fmt.Errorf("%w; and the role could not be dropped (%v): the next drconsole run drops it", err, derr)
		}
		return nil, err
	}
	return sb, nil
}

// sandboxLogin finds how the role can log in to the server: the way drconsole connects,
// or, when that is a Unix socket whose rules only let operating-system users in (peer),
// over TCP on the same port.
func (p *Plan) sandboxLogin(ctx context.Context, role, password string) (*Conn, error) {
	c := p.opts.Conn
	tries := []string{c.Host}
	if strings.HasPrefix(c.Host, "/") {
		tries = append(tries, "localhost")
	}
	var first error
	for _, host := range tries {
		sc := c.as(role, password, host)
		conn, err := connectAdminAs(ctx, sc, truncateName("drconsole: loading role of "+p.Target))
		if err == nil {
			conn.Close(context.Background())
			return sc, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%w: the server does not let drconsole's loading role log in with its password (%s). drconsole loads a backup as a role without privileges so that nothing in it can act outside its scratch copy: allow password logins for %s in pg_hba.conf (for example: host all all 127.0.0.1/32 scram-sha-256), or, for a backup you trust, load it as %q with --trust-backup",
		ErrSandbox, pgMessage(first), c.Server(), c.User)
}

// as is the same server reached as another role, at host ("" keeps the host).
func (c *Conn) as(user, password, host string) *Conn {
	d := *c
	d.User, d.Password, d.PasswordInArgs = user, password, false
	d.cfg = c.cfg.Copy()
	d.cfg.User, d.cfg.Password = user, password
	if host != "" && host != c.Host {
		d.Host, d.cfg.Host = host, host
		d.cfg.Fallbacks = nil
	}
	return &d
}

// dropSandbox drops a loading role that owns nothing any more (its scratch database was
// dropped, or handed to the backup's owners): it is logged out, its privileges on shared
// objects revoked, and it is gone. On a fresh connection, with its own time limit, like
// dropDatabase.
func dropSandbox(c *Conn, role string) error {
	if !strings.HasPrefix(role, sandboxPrefix) {
		return fmt.Errorf("%q is not a drconsole loading role", role)
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	for {
		admin, err := connectSettling(ctx, c)
		if err != nil {
			return fmt.Errorf("dropping role %s: %v", role, oneLineErr(err))
		}
		ident := pgx.Identifier{role}.Sanitize()
		for _, s := range []string{
			"ALTER ROLE " + ident + " NOLOGIN",
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = " + quoteLiteral(role),
			"DROP OWNED BY " + ident,
			"DROP ROLE " + ident,
		} {
			if _, err = admin.Exec(ctx, s); err != nil {
				break
			}
		}
		admin.Close(context.Background())
		var pe *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pe) && pe.Code == "42704": // already gone
			return nil
		case errors.As(err, &pe), ctx.Err() != nil:
			return fmt.Errorf("dropping role %s: %v", role, pgMessage(err))
		}
	}
}

// escapeLiteral is an escape-string literal, whatever standard_conforming_strings says.
func escapeLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// scramVerifier is what PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5803), made
// here so that the password itself never travels to the server.
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	var salt [16]byte
	rand.Read(salt[:])
	salted, err := pbkdf2.Key(sha256.New, password, salt[:], iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt[:]), b64(stored[:]), b64(server)), nil
}

// installExtension installs, as the superuser, an extension the backup asks for that the
// sandbox may not install itself (not marked trusted), into schema ("" = public), in the
// scratch database. installed is false when the sandbox can do it (a trusted extension)
// or nobody can (not available: the backup's own statement then fails with the server's
// words). mayCreateSchema: the schema is one the archive creates; drconsole creates it,
// owned by the sandbox, and the archive's entry for it is skipped.
func (p *Plan) installExtension(ctx context.Context, name, schema string, mayCreateSchema bool) (installed, createdSchema bool, err error) {
	if schema == "" {
		schema = "public"
	}
	conn, err := p.opts.Conn.connect(ctx, p.Scratch, "drconsole: installing extensions")
	if err != nil {
		return false, false, err
	}
	defer conn.Close(context.Background())
	var untrusted bool
	if err := conn.QueryRow(ctx, `SELECT coalesce((SELECT NOT v.trusted AND v.superuser FROM pg_available_extensions e
			JOIN pg_available_extension_versions v ON v.name = e.name AND v.version = e.default_version
			WHERE e.name = $1), false)`, name).Scan(&untrusted); err != nil {
		return false, false, fmt.Errorf("%w: reading extension %s: %v", ErrDatabase, name, pgMessage(err))
	}
	if !untrusted {
		return false, false, nil
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return false, false, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
	}
	if !exists {
		if !mayCreateSchema {
			return false, false, fmt.Errorf("%w: the backup installs extension %q, which only a superuser may install, into schema %q that it creates in the same transaction; drconsole loads a plain dump as a role without privileges and cannot install it there: for a backup you trust, restore with --trust-backup",
				ErrSandbox, name, schema)
		}
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()+" AUTHORIZATION "+pgx.Identifier{p.sandbox.role}.Sanitize()); err != nil {
			return false, false, fmt.Errorf("%w: creating schema %s for extension %s: %v", ErrDatabase, schema, name, pgMessage(err))
		}
		createdSchema = true
	}
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return false, createdSchema, fmt.Errorf("%w: installing extension %s: %v", ErrRestoreTool, name, pgMessage(err))
	}
	return true, createdSchema, nil
}

// createExtensionRE reads pg_dump's CREATE EXTENSION [IF NOT EXISTS] name [WITH] [SCHEMA s].
var createExtensionRE = regexp.MustCompile(`(?is)^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[^\s;]+)(?:\s+WITH)?(?:\s+SCHEMA\s+("(?:[^"]|"")+"|[^\s;]+))?`)

// commentExtensionRE reads COMMENT ON EXTENSION name.
var commentExtensionRE = regexp.MustCompile(`(?is)^\s*COMMENT\s+ON\s+EXTENSION\s+("(?:[^"]|"")+"|[^\s;]+)`)

// extensionIn reads the extension and schema a CREATE EXTENSION statement names.
func extensionIn(stmt string) (name, schema string, ok bool) {
	m := createExtensionRE.FindStringSubmatch(stmt)
	if m == nil {
		return "", "", false
	}
	if m[2] != "" {
		schema = unquoteIdent(m[2])
	}
	return unquoteIdent(m[1]), schema, true
}

// plainGuard is what the sandbox leaves to drconsole in a plain dump: ALTER … OWNER TO
// and ALTER DEFAULT PRIVILEGES are recorded in own and applied after the load
// (settleOwners); an extension only a superuser may install is installed by drconsole,
// and its COMMENT ON EXTENSION skipped (the extension sets its own).
func (p *Plan) plainGuard(own *ownership) plainGuard {
	installed := map[string]bool{}
	return func(ctx context.Context, st sqlStmt) (bool, error) {
		word := func(i int) string {
			if st.toks[i].kind != tokWord {
				return ""
			}
			return st.toks[i].text
		}
		a, b, c := word(0), word(1), word(2)
		switch {
		case a == "alter" && b == "default" && c == "privileges":
			if !p.opts.NoOwner {
				own.defaultACL = append(own.defaultACL, string(st.text))
			}
			return true, nil
		case a == "alter":
			o, ok := plainOwner(string(st.text))
			if !ok {
				return false, nil
			}
			if !p.opts.NoOwner {
				own.objects = append(own.objects, o)
			}
			return true, nil
		case a == "create" && b == "extension":
			name, schema, ok := extensionIn(string(st.text))
			if !ok {
				return false, nil
			}
			done, _, err := p.installExtension(ctx, name, schema, false)
			installed[name] = done
			return done, err
		case a == "comment" && b == "on" && c == "extension":
			m := commentExtensionRE.FindStringSubmatch(string(st.text))
			return m != nil && installed[unquoteIdent(m[1])], nil
		}
		return false, nil
	}
}

// sandboxTOC is plainGuard for a custom archive, done on its table of contents before
// anything loads: an extension only a superuser may install is installed by drconsole
// (with the schema it goes into, when the archive creates that schema), every object's
// owner and the default privileges are recorded for settleOwners. skip lists the entries
// pg_restore must then leave out: those extensions, their comments and schemas, and the
// default privileges.
func (p *Plan) sandboxTOC(ctx context.Context, toc *pgarchive.Archive) (skip map[int]bool, err error) {
	if p.sandbox == nil {
		return nil, nil
	}
	skip = map[int]bool{}
	schemas := map[string]*pgarchive.Entry{}
	for _, e := range toc.Entries {
		if e.Desc == "SCHEMA" {
			schemas[e.Tag] = e
		}
	}
	for _, e := range toc.Entries {
		switch e.Desc {
		case "EXTENSION":
			name, schema, ok := extensionIn(e.Defn)
			if !ok {
				continue // pg_restore says what is wrong with it
			}
			own := schemas[schema]
			installed, created, err := p.installExtension(ctx, name, schema, own != nil)
			if err != nil {
				return nil, err
			}
			if !installed {
				continue
			}
			skip[e.ID] = true
			if created {
				skip[own.ID] = true
			}
			for _, c := range toc.Entries {
				if quoted := (pgx.Identifier{name}).Sanitize(); c.Desc == "COMMENT" && (c.Tag == "EXTENSION "+name || c.Tag == "EXTENSION "+quoted) {
					skip[c.ID] = true
				}
			}
		case "DEFAULT ACL":
			skip[e.ID] = true
			if p.opts.NoOwner {
				continue
			}
			sc := newSQLScanner(strings.NewReader(e.Defn))
			for {
				st, err := sc.next()
				if err != nil {
					break // io.EOF, or a text settleOwners would refuse anyway
				}
				p.own.defaultACL = append(p.own.defaultACL, string(st.text))
			}
		}
		if o, ok := tocOwner(e); ok && !p.opts.NoOwner {
			p.own.objects = append(p.own.objects, o)
		}
	}
	return skip, nil
}
