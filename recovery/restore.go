package recovery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"drconsole/storage"
)

// Mode is what a restore will do with the database it targets.
type Mode string

const (
	// ModeSwap replaces a live database: restore into scratch, check, then (confirmed)
	// rename live → kept and scratch → live.
	ModeSwap Mode = "swap"
	// ModeCreate is a fresh host: the target does not exist; the scratch database takes its name.
	ModeCreate Mode = "create"
	// ModeTest restores into a new database of the operator's naming and stops there:
	// the monthly "restore to a test database". Nothing is swapped.
	ModeTest Mode = "test"
)

// Options are what a restore needs besides the backup.
type Options struct {
	Conn    *Conn  // the target server; Conn.Database is the target ("" = the archive's own)
	Keys    *Keys  // decryption keys; nil when the backup is not encrypted
	Tools   *Tools // nil: FindTools
	TestDB  string // ModeTest: restore into this new database, check, and stop
	NoOwner bool   // pg_restore --no-owner: objects belong to the connecting role
	// TrustBackup loads the backup as the connecting role instead of a role without
	// privileges (sandbox.go): for a backup that needs a superuser (C functions, event
	// triggers) or a server that lets no password login in. Its SQL can then act outside
	// the scratch database.
	TrustBackup bool
	// FromDB is the database the operator says the backup was taken from, when it is not
	// the target (--from-db): a backup of another database is refused unless named here.
	FromDB string
	// AllowUnsigned: restore a backup that no trusted signer signed although signers are
	// configured (Keys.Signers); it is still flagged.
	AllowUnsigned bool
	// Checks are the application's integrity checks (from the runbook), run in the
	// restored copy besides drconsole's own.
	Checks   []Check
	Now      func() time.Time
	Interval time.Duration // progress throttle; 0 = ProgressInterval
	// Engine loads a custom-format archive: EngineAuto ("" too), EnginePgRestore or
	// EngineParallel (see engine.go).
	Engine string
	Jobs   int // the parallel engine's connections; 0: the CPUs, 2 to 8
}

// Plan is a restore that has passed every check that can be made without touching a
// database: the operator reads it, confirms by typing Target, then calls Restore.
type Plan struct {
	Source        Source
	Contents      *Contents // layers, format, archive header and table list
	Mode          Mode
	Target        string // the database the operator confirms by typing its name
	Scratch       string // where the backup is restored first
	Kept          string // ModeSwap: what the old live database is renamed to and kept as
	Server        string // host:port
	ServerVersion string
	Passed        []string // preflight checks that passed, in words
	Warnings      []string
	Leftovers     []Leftover // what earlier restores left on the server (all targets)

	opts  Options
	tools *Tools
	now   time.Time
	lock  *targetLock // one restore at a time per target: held until Swap, Abandon or Release
	// sandbox is the role the backup loads as, from pre-flight until the restored copy
	// is handed to the backup's owners; nil with TrustBackup.
	sandbox *sandbox
	own     ownership // what the backup says about owners, for settleOwners
}

// loadConn is how the backup's SQL reaches the scratch database: as the sandbox role.
func (p *Plan) loadConn() *Conn {
	if p.sandbox != nil {
		return p.sandbox.conn
	}
	return p.opts.Conn
}

// dropSandbox drops the loading role once it owns nothing; what cannot be dropped now is
// found by the next run (FindLeftovers, Repair).
func (p *Plan) dropSandbox() error {
	if p.sandbox == nil {
		return nil
	}
	if err := dropSandbox(p.opts.Conn, p.sandbox.role); err != nil {
		return err
	}
	p.sandbox = nil
	return nil
}

// Release gives up a plan that will not be restored, or a restore that will not be
// swapped: it frees the target for another restore. Restore, Swap and Abandon release
// it themselves when they are done with it; releasing twice is fine.
func (p *Plan) Release() {
	if p != nil {
		p.lock.release()
		_ = p.dropSandbox() // fails only while it owns a scratch copy: a leftover then
	}
}

// Prepare reads the backup far enough to prove the key works and the archive parses,
// checks the tools, the server, the connecting role's powers and the roles the archive
// needs, and chooses the scratch and kept names. Nothing is changed anywhere but for the
// sandbox role the backup will load as, made now to prove it can log in; Release drops it.
func Prepare(ctx context.Context, src Source, opts Options) (*Plan, error) {
	if opts.Conn == nil {
		return nil, fmt.Errorf("%w: no connection settings", ErrPreflight)
	}
	if err := validEngine(opts.Engine); err != nil {
		return nil, err
	}
	if opts.Jobs < 0 || opts.Jobs > maxJobs {
		return nil, fmt.Errorf("%w: %d connections for the parallel engine: give 1 to %d (0: as many as the CPUs, 2 to 8)", ErrPreflight, opts.Jobs, maxJobs)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	p := &Plan{Source: src, opts: opts, now: now().UTC(), Server: opts.Conn.Server()}
	// Running pg_restore --version and reading the backup's header overlap: both are
	// start-up cost paid before any row moves.
	tools := opts.Tools
	var toolsErr error
	found := make(chan struct{})
	go func() {
		defer close(found)
		if tools == nil {
			tools, toolsErr = FindTools(ctx, "")
		}
	}()
	contents, err := Inspect(ctx, src, opts.Keys)
	<-found
	if toolsErr != nil {
		return nil, toolsErr
	}
	if err != nil {
		return nil, err
	}
	p.tools = tools
	p.Contents = contents
	if contents.Encrypted() {
		p.Passed = append(p.Passed, "key decrypts the backup")
	}
	if err := p.checkSignature(); err != nil {
		return nil, err
	}
	if a := contents.Archive; a != nil {
		p.Passed = append(p.Passed, fmt.Sprintf("archive parses: version %s, pg_dump %s, database %q, %d tables with data", a.Version, a.DumpVersion, a.Database, len(a.Tables)))
		if err := tools.CheckArchive(a); err != nil {
			return nil, err
		}
		p.Passed = append(p.Passed, fmt.Sprintf("%s reads archive version %s", tools.Version, a.Version))
		p.Passed = append(p.Passed, p.engineLine())
	} else {
		p.Passed = append(p.Passed, "plain SQL dump: its statements are run by drconsole itself, one transaction, no psql meta-commands")
	}

	switch {
	case opts.TestDB != "":
		p.Target, p.Mode = opts.TestDB, ModeTest
	case opts.Conn.Database != "":
		p.Target = opts.Conn.Database
	case contents.Archive != nil && contents.Archive.Database != "":
		p.Target = contents.Archive.Database
	default:
		return nil, fmt.Errorf("%w: a plain SQL dump does not name its database; name the target (DB_NAME, --db-url or PGDATABASE)", ErrPreflight)
	}
	if err := ValidTarget(p.Target); err != nil {
		return nil, err
	}

	if opts.FromDB != "" {
		if err := ValidTarget(opts.FromDB); err != nil && !strings.Contains(err.Error(), "server's own") {
			return nil, fmt.Errorf("--from-db: %w", err)
		}
	}

	admin, err := connectAdmin(ctx, opts.Conn)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	_ = admin.QueryRow(ctx, "SHOW server_version").Scan(&p.ServerVersion)
	p.Passed = append(p.Passed, fmt.Sprintf("server %s reachable (PostgreSQL %s)", p.Server, p.ServerVersion))

	// From here until the swap or abandon, no other restore may work on the target.
	if p.lock, err = lockTarget(ctx, opts.Conn, p.Target); err != nil {
		return nil, err
	}
	p.Passed = append(p.Passed, fmt.Sprintf("no other restore of %q is running (this one holds its lock on the server)", p.Target))
	if err := p.checkServer(ctx, admin); err != nil {
		p.lock.release()
		return nil, err
	}
	if err := p.checkSource(); err != nil {
		p.lock.release()
		return nil, err
	}
	if p.Leftovers, err = findLeftovers(ctx, admin); err != nil {
		p.lock.release()
		return nil, err
	}
	var kept int
	var keptBytes int64
	for _, l := range p.Leftovers {
		switch {
		case l.Role == RoleScratch && !l.InUse:
			p.Warnings = append(p.Warnings, fmt.Sprintf("left on the server by an interrupted restore: %s; drop it with drconsole check --drop-leftovers", l.Describe(p.now)))
		case l.Role == RoleKept:
			kept++
			keptBytes += max(l.Size, 0)
		}
	}
	if kept > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("kept copies of databases that earlier swaps replaced, on the server: %d (%s); drconsole check lists them, --drop-kept drops them", kept, formatBytes(keptBytes)))
	}
	if opts.TrustBackup {
		p.Warnings = append(p.Warnings, fmt.Sprintf("--trust-backup: the backup's SQL runs as %q; whatever it holds can act outside the scratch copy", opts.Conn.User))
		return p, nil
	}
	if p.sandbox, err = p.createSandbox(ctx, admin); err != nil {
		p.lock.release()
		return nil, err
	}
	p.Passed = append(p.Passed, fmt.Sprintf("the backup loads as %s, a role with no privileges of its own: nothing in it can act outside its scratch copy", p.sandbox.role))
	return p, nil
}

// checkSignature applies the signature policy: with trusted signers configured, a backup
// none of them signed is refused (unless AllowUnsigned); without them, who signed is only
// reported. Either way an unsigned backup is flagged: nothing proves it is the team's.
func (p *Plan) checkSignature() error {
	sig := p.Contents.Signature
	var signers int
	if p.opts.Keys != nil {
		signers = len(p.opts.Keys.Signers)
	}
	switch {
	case sig.Trusted:
		p.Passed = append(p.Passed, "carries a signature: "+sig.String()+", a trusted signer; it is verified as the backup streams, and a bad one stops the restore before any swap")
	case signers > 0 && !p.opts.AllowUnsigned:
		return inBackup(p.Source, fmt.Errorf("%w: nothing proves it was made by your backup job (restore it anyway only if you know where it came from: --allow-unsigned)", sig.Require()))
	case signers > 0:
		what := "not signed"
		if sig.Signed {
			what = sig.String() + ", not one of the trusted signers"
		}
		p.Warnings = append(p.Warnings, what+": restoring it anyway, as asked (--allow-unsigned)")
	case sig.Signed:
		p.Warnings = append(p.Warnings, sig.String()+": not checked, no signer key is configured (--signer-key)")
	default:
		p.Warnings = append(p.Warnings, "not signed: nothing proves this backup was made by your backup job (sign backups with drconsole backup --sign-key, check them with --signer-key)")
	}
	return nil
}

// checkSource refuses a backup of another database: restoring otherdb's dump under the
// live name would replace production with the wrong data. The operator may still do it
// by naming the backup's database (Options.FromDB). A test restore is exempt: it goes to
// a new database of the operator's naming.
func (p *Plan) checkSource() error {
	a := p.Contents.Archive
	if p.Mode == ModeTest {
		return nil
	}
	if a == nil || a.Database == "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("a plain SQL dump does not say which database it was taken from: nothing proves it is %q's (the swap still checks that no table of %q is missing)", p.Target, p.Target))
		return nil
	}
	from := p.opts.FromDB
	switch {
	case a.Database == p.Target && (from == "" || from == a.Database):
		p.Passed = append(p.Passed, fmt.Sprintf("the backup is of database %q, the target", a.Database))
	case from == a.Database:
		p.Warnings = append(p.Warnings, fmt.Sprintf("the backup is of database %q, not %q: restoring it into %q anyway, as asked (--from-db %s)", a.Database, p.Target, p.Target, a.Database))
	case from != "":
		return &WrongDatabaseError{Archive: a.Database, Target: p.Target, FromDB: from}
	default:
		return &WrongDatabaseError{Archive: a.Database, Target: p.Target}
	}
	return nil
}

// connectAdmin connects to a maintenance database, never the target.
func connectAdmin(ctx context.Context, c *Conn) (*pgx.Conn, error) {
	return connectAdminAs(ctx, c, "drconsole")
}

func (p *Plan) checkServer(ctx context.Context, admin *pgx.Conn) error {
	var super, createdb, signal bool
	var me string
	if err := admin.QueryRow(ctx, `SELECT current_user, rolsuper, rolcreatedb, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
		FROM pg_roles WHERE rolname = current_user`).Scan(&me, &super, &createdb, &signal); err != nil {
		return fmt.Errorf("%w: reading the connecting role's privileges: %v", ErrDatabase, err)
	}
	if !super && !createdb {
		return fmt.Errorf("%w: role %q cannot create databases (needs CREATEDB) for the scratch database", ErrPreflight, me)
	}
	p.Passed = append(p.Passed, fmt.Sprintf("role %q can create databases", me))

	existing, err := databaseNames(ctx, admin)
	if err != nil {
		return err
	}
	var exists, owns bool
	var otherBackends int
	if existing[p.Target] {
		exists = true
		if err := admin.QueryRow(ctx, `SELECT pg_has_role(current_user, datdba, 'MEMBER') FROM pg_database WHERE datname = $1`, p.Target).Scan(&owns); err != nil {
			return fmt.Errorf("%w: %v", ErrDatabase, err)
		}
		_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename <> current_user`, p.Target).Scan(&otherBackends)
	}
	switch {
	case p.Mode == ModeTest && exists:
		return fmt.Errorf("%w: database %q already exists; a test restore needs a new database name", ErrPreflight, p.Target)
	case p.Mode == ModeTest:
	case exists:
		p.Mode = ModeSwap
		if !super && !owns {
			return fmt.Errorf("%w: role %q neither owns database %q nor is a superuser, so it cannot rename it", ErrPreflight, me, p.Target)
		}
		p.Passed = append(p.Passed, fmt.Sprintf("role %q may rename database %q", me, p.Target))
		if otherBackends > 0 && !super && !signal {
			return fmt.Errorf("%w: %d sessions of other roles are connected to %q and role %q cannot end them (needs pg_signal_backend)", ErrPreflight, otherBackends, p.Target, me)
		}
		p.Passed = append(p.Passed, fmt.Sprintf("role %q can end the sessions connected to %q", me, p.Target))
		// A prepared transaction survives every session being ended and blocks the rename:
		// found now, not after an hour of loading.
		var prepared int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE database = $1`, p.Target).Scan(&prepared); err != nil {
			return fmt.Errorf("%w: reading prepared transactions: %v", ErrDatabase, pgMessage(err))
		}
		if prepared > 0 {
			return fmt.Errorf("%w: %q has %d prepared transaction(s) (pg_prepared_xacts), which would block the swap; COMMIT PREPARED or ROLLBACK PREPARED them first", ErrPreflight, p.Target, prepared)
		}
	default:
		if near := nearName(p.Target, existing); near != "" {
			return fmt.Errorf("%w: database %q does not exist on %s; did you mean %q?", ErrNoDatabase, p.Target, p.Server, near)
		}
		p.Mode = ModeCreate
		p.Warnings = append(p.Warnings, fmt.Sprintf("database %q does not exist on %s; it will be created from the backup", p.Target, p.Server))
	}

	if a := p.Contents.Archive; a != nil && !p.opts.NoOwner && len(a.Owners) > 0 {
		rows, err := admin.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname = ANY($1)`, a.Owners)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDatabase, err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDatabase, err)
		}
		have := map[string]bool{}
		for _, r := range found {
			have[r] = true
		}
		var missing []string
		for _, o := range a.Owners {
			if !have[o] {
				missing = append(missing, o)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%w: roles the archive's objects belong to do not exist on %s: %s (create them, or restore with --no-owner)", ErrOwners, p.Server, strings.Join(missing, ", "))
		}
		if !super {
			for _, o := range a.Owners {
				var member bool
				if err := admin.QueryRow(ctx, `SELECT pg_has_role(current_user, $1, 'MEMBER')`, o).Scan(&member); err == nil && !member {
					return fmt.Errorf("%w: role %q cannot give objects to role %q (needs superuser or membership; or restore with --no-owner)", ErrOwners, me, o)
				}
			}
		}
		p.Passed = append(p.Passed, fmt.Sprintf("roles the archive needs exist: %s", strings.Join(a.Owners, ", ")))
	}
	if a := p.Contents.Archive; a != nil && p.opts.NoOwner && len(a.Owners) > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("ownership is not restored (--no-owner): every object will belong to %q, not to %s", me, strings.Join(a.Owners, ", ")))
	}

	stamp := p.now.Format("20060102_150405")
	if p.Mode == ModeTest {
		p.Scratch = p.Target
	} else {
		p.Scratch = freeName(p.Target, "_restore_"+stamp, existing)
		existing[p.Scratch] = true
	}
	if p.Mode == ModeSwap {
		p.Kept = freeName(p.Target, "_pre_restore_"+stamp, existing)
	}
	return nil
}

func databaseNames(ctx context.Context, admin *pgx.Conn) (map[string]bool, error) {
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database`)
	if err != nil {
		return nil, fmt.Errorf("%w: listing databases: %v", ErrDatabase, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%w: listing databases: %v", ErrDatabase, err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

const maxIdentifier = 63 // PostgreSQL silently truncates longer names (NAMEDATALEN-1)

// ValidTarget refuses a database name that cannot be a restore's target: empty, too long,
// with control characters or spaces at its ends, one that looks like connection settings
// ("dbname=x", "postgres://…": libpq tools would take it for a connection string), or one
// of the server's own databases.
func ValidTarget(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the target database name is empty", ErrPreflight)
	case len(name) > maxIdentifier:
		return fmt.Errorf("%w: database name %q is longer than %d bytes", ErrPreflight, name, maxIdentifier)
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: database name %q contains control characters", ErrPreflight, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: database name %q starts or ends with a space", ErrPreflight, name)
	case strings.Contains(name, "=") || strings.Contains(name, "://"):
		return fmt.Errorf("%w: %q looks like connection settings, not a database name (settings go in --db-url or DB_*; name only the database)", ErrPreflight, name)
	case name == "postgres" || name == "template0" || name == "template1":
		return fmt.Errorf("%w: %q is the server's own database; drconsole never restores over it", ErrPreflight, name)
	}
	return nil
}

// freeName builds base+suffix within 63 bytes that no existing database has. When base
// must be shortened, a hash of the whole base keeps two long names from colliding.
func freeName(base, suffix string, existing map[string]bool) string {
	name := base + suffix
	// A taken name gets a _NN counter, which must fit too.
	if len(name) > maxIdentifier || existing[name] && len(name)+3 > maxIdentifier {
		sum := sha256.Sum256([]byte(base))
		tag := "_" + hex.EncodeToString(sum[:])[:6]
		keep := maxIdentifier - len(suffix) - len(tag) - 3 // room for a _NN collision counter
		b := base[:max(keep, 0)]
		for !utf8.ValidString(b) {
			b = b[:len(b)-1]
		}
		name = b + tag + suffix
	}
	for i := 2; existing[name]; i++ {
		name = strings.TrimSuffix(name, fmt.Sprintf("_%d", i-1))
		name = fmt.Sprintf("%s_%d", name, i)
	}
	return name
}

// nearName returns an existing database whose name is one or two edits from name: the
// typo'd name that must not silently become a new database.
func nearName(name string, existing map[string]bool) string {
	best, bestD := "", 3
	for e := range existing {
		if e == "template0" || e == "template1" || e == "postgres" {
			continue
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(e)); d < bestD {
			best, bestD = e, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Restored is a backup loaded into the scratch database and checked there. It is still
// beside the live database: Swap puts it in place, Abandon drops it.
type Restored struct {
	Plan     *Plan
	Database string // the scratch database (the target itself in ModeTest)
	Checks   []CheckResult
	Read     int64 // bytes read from the location
	Dump     int64 // bytes of dump fed to pg_restore (or run as SQL)
	Tables   int   // tables whose data pg_restore loaded
	Duration time.Duration
	Warnings []string // the warnings pg_restore printed, or the server sent for plain SQL
	// Engine is the engine that loaded a custom-format archive (EnginePgRestore or
	// EngineParallel); Fallback why the parallel engine gave way to pg_restore, if it did.
	Engine, Fallback string
	// Rows are each table's rows in the archive (counted as the stream passed) and, after
	// the checks, in the restored copy and the live database. nil for plain SQL.
	Rows []TableRows

	finished bool // failed, swapped, abandoned or dropped: nothing more to do with it
	unknown  bool // a swap was interrupted and the server could not tell whether it committed
}

// DescribeLoad is the part of Describe before any swap: what is restored where.
func (p *Plan) DescribeLoad() string {
	return fmt.Sprintf("restore %s into %s on %s and check it", storage.Printable(p.Source.Backup.Name), p.Scratch, p.Server)
}

// Describe says what the restore will do, for messages.
func (p *Plan) Describe() string {
	switch p.Mode {
	case ModeSwap:
		return fmt.Sprintf("restore %s into %s on %s, check it, then swap it in for %s (kept as %s)", storage.Printable(p.Source.Backup.Name), p.Scratch, p.Server, p.Target, p.Kept)
	case ModeCreate:
		return fmt.Sprintf("restore %s into %s on %s, check it, then rename it to %s (which does not exist yet)", storage.Printable(p.Source.Backup.Name), p.Scratch, p.Server, p.Target)
	}
	return fmt.Sprintf("restore %s into the new database %s on %s and check it; nothing is swapped", storage.Printable(p.Source.Backup.Name), p.Target, p.Server)
}
