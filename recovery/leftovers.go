package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/storage"
)

// What a restore leaves on the server is marked there, so that whoever connects next
// (another machine, another state directory, a later version) can tell what it is: each
// database drconsole creates carries a comment (COMMENT ON DATABASE) saying what it is,
// for which target, from which backup and since when. A restore killed before it could
// clean up leaves its scratch database; a swap leaves the replaced database as the kept
// copy. Both are found by FindLeftovers and dropped only when someone says so.

// Marker is what drconsole writes in the comment of a database it created.
type Marker struct {
	Role    string    `json:"role"` // RoleScratch, RoleKept or RoleTest
	Target  string    `json:"target"`
	Backup  string    `json:"backup,omitempty"`
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"` // Holder() of the run that made it
}

// Roles of a marked database.
const (
	RoleScratch = "scratch" // a restore's copy that never went live
	RoleKept    = "kept"    // the database a swap replaced, kept for rollback and forensics
	RoleTest    = "test"    // a test restore's database, made on purpose (--target-db)
)

const markerPrefix = "drconsole:"

func (m Marker) comment() string {
	b, _ := json.Marshal(m)
	return markerPrefix + string(b)
}

// parseMarker reads a database comment written by drconsole.
func parseMarker(comment string) (Marker, bool) {
	var m Marker
	rest, ok := strings.CutPrefix(comment, markerPrefix)
	if !ok || json.Unmarshal([]byte(rest), &m) != nil || m.Role == "" {
		return Marker{}, false
	}
	return m, true
}

// commentStatement sets (or, for "", removes) a database's comment. COMMENT takes no
// parameters, so the text is an escape-string literal, whatever the server's
// standard_conforming_strings.
func commentStatement(database, text string) string {
	lit := "NULL"
	if text != "" {
		lit = escapeLiteral(text)
	}
	return "COMMENT ON DATABASE " + pgx.Identifier{database}.Sanitize() + " IS " + lit
}

// Names a restore gives its databases, for finding them when their mark is missing (a
// kill between CREATE DATABASE and the comment): <target>_restore_<stamp>,
// <target>_pre_restore_<stamp>, verify's <db>_verify_<stamp>, each maybe with _N.
var (
	keptNameRE    = regexp.MustCompile(`^(.*)_pre_restore_(\d{8}_\d{6})(?:_\d+)?$`)
	scratchNameRE = regexp.MustCompile(`^(.*)_(?:restore|verify)_(\d{8}_\d{6})(?:_\d+)?$`)
)

// Leftover is a database drconsole left on the server.
type Leftover struct {
	Name   string    `json:"name"`
	Role   string    `json:"role"`             // RoleScratch or RoleKept
	Target string    `json:"target,omitempty"` // the database it belongs to
	Backup string    `json:"backup,omitempty"` // the backup restored into it
	Since  time.Time `json:"since,omitzero"`   // when its restore started
	Size   int64     `json:"size_bytes"`       // -1: unknown (no privilege to read it)
	Marked bool      `json:"marked"`           // it carries drconsole's mark (else known by its name only)
	// LoadRole is the sandbox role of the restore that made it, when it still owns it (the
	// restore never finished); dropped with it.
	LoadRole string `json:"load_role,omitempty"`
	// InUse: a restore of Target is running now (its lock is held, or sessions are on the
	// database): not a leftover yet, and never dropped.
	InUse bool `json:"in_use,omitempty"`
}

// Age is how long ago its restore started, or 0 when unknown.
func (l Leftover) Age(now time.Time) time.Duration {
	if l.Since.IsZero() {
		return 0
	}
	return now.Sub(l.Since)
}

// Describe is one line about it for the operator.
func (l Leftover) Describe(now time.Time) string {
	return fmt.Sprintf("%s %s (%s)", l.What(), l.Name, strings.Join(l.Facts(now), ", "))
}

// What it is, in two words: "scratch copy" or "kept copy".
func (l Leftover) What() string {
	if l.Role == RoleKept {
		return "kept copy"
	}
	return "scratch copy"
}

// Facts are what the operator needs to decide about it: whose, how big, how old, from
// which backup, and whether a restore is using it now.
func (l Leftover) Facts(now time.Time) []string {
	var parts []string
	if l.Target != "" {
		if l.Role == RoleKept {
			parts = append(parts, fmt.Sprintf("what %s held before a restore", l.Target))
		} else {
			parts = append(parts, "of "+l.Target)
		}
	}
	if l.Size >= 0 {
		parts = append(parts, formatBytes(l.Size))
	}
	if age := l.Age(now); age > 0 {
		parts = append(parts, shortAge(age)+" old")
	}
	if l.Backup != "" {
		parts = append(parts, "from "+storage.Printable(l.Backup))
	}
	if l.InUse {
		parts = append(parts, "in use by a running restore")
	}
	if !l.Marked {
		parts = append(parts, "unmarked: only its name says it is a restore's, drconsole does not drop it")
	}
	return parts
}

// Droppable: drconsole drops it when asked (DropLeftover checks again on the server).
func (l Leftover) Droppable() bool { return l.Marked && !l.InUse }

func shortAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d < time.Minute:
		return "<1m"
	}
	return fmt.Sprintf("%dm", int(d.Minutes()))
}

// FindLeftovers lists the scratch and kept databases drconsole left on the server, for
// every target, newest first. Scratch copies of a restore that is running now are listed
// as InUse.
func FindLeftovers(ctx context.Context, c *Conn) ([]Leftover, error) {
	admin, err := connectAdmin(ctx, c)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	return findLeftovers(ctx, admin)
}

func findLeftovers(ctx context.Context, admin *pgx.Conn) ([]Leftover, error) {
	rows, err := admin.Query(ctx, `SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), ''),
			CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) ELSE -1 END,
			(SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid),
			pg_get_userbyid(d.datdba), coalesce(shobj_description(d.datdba, 'pg_authid'), '')
		FROM pg_database d WHERE NOT d.datistemplate`)
	if err != nil {
		return nil, fmt.Errorf("%w: listing databases: %v", ErrDatabase, pgMessage(err))
	}
	type row struct {
		name, comment, owner, ownerComment string
		size, conns                        int64
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.name, &x.comment, &x.size, &x.conns, &x.owner, &x.ownerComment)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: listing databases: %v", ErrDatabase, pgMessage(err))
	}
	var out []Leftover
	for _, d := range all {
		l, ok := leftoverOf(d.name, d.comment)
		if m, sandboxed := parseMarker(d.ownerComment); sandboxed && m.Role == RoleSandbox && strings.HasPrefix(d.owner, sandboxPrefix) {
			// Owned by a restore's loading role: that restore never finished. Its mark says
			// whose, even when a kill came before the database's own mark.
			if !ok || !l.Marked {
				l = Leftover{Name: d.name, Role: RoleScratch, Target: m.Target, Backup: m.Backup, Since: m.Started, Marked: true}
				ok = true
			}
			l.LoadRole = d.owner
		}
		if !ok {
			continue
		}
		l.Size = d.size
		if l.Role == RoleScratch {
			held := false
			if l.Target != "" {
				if held, err = lockHeld(ctx, admin, l.Target); err != nil {
					return nil, fmt.Errorf("%w: reading the restore locks: %v", ErrDatabase, pgMessage(err))
				}
			}
			l.InUse = held || d.conns > 0
		}
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.After(out[j].Since)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// leftoverOf says whether a database is one drconsole left, from its mark, else its name.
func leftoverOf(name, comment string) (Leftover, bool) {
	if m, ok := parseMarker(comment); ok {
		if m.Role != RoleScratch && m.Role != RoleKept {
			return Leftover{}, false // a test restore: the operator's database
		}
		return Leftover{Name: name, Role: m.Role, Target: m.Target, Backup: m.Backup, Since: m.Started, Marked: true}, true
	}
	if comment != "" { // somebody's own comment: not ours to judge by its name
		return Leftover{}, false
	}
	for _, p := range []struct {
		re   *regexp.Regexp
		role string
	}{{keptNameRE, RoleKept}, {scratchNameRE, RoleScratch}} {
		if m := p.re.FindStringSubmatch(name); m != nil {
			since, _ := time.ParseInLocation("20060102_150405", m[2], time.UTC)
			return Leftover{Name: name, Role: p.role, Target: m[1], Since: since}, true
		}
	}
	return Leftover{}, false
}

// DropLeftover drops one database FindLeftovers lists, after checking again that it is a
// marked leftover and not in use: names are never taken on trust.
func DropLeftover(ctx context.Context, c *Conn, name string) error {
	admin, err := connectAdmin(ctx, c)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	list, err := findLeftovers(ctx, admin)
	if err != nil {
		return err
	}
	for _, l := range list {
		if l.Name != name {
			continue
		}
		if l.InUse {
			return fmt.Errorf("%w: %s belongs to a restore that is running now; not dropped", ErrPreflight, name)
		}
		if !l.Marked {
			// Only the name says it is a restore's: another tool, or a person, may have
			// made it. Nothing drconsole did not make is dropped on a name.
			return fmt.Errorf("%w: %s is named like a restore's database but carries no drconsole mark; not dropped (look at it, then DROP DATABASE it yourself if it is not needed)", ErrPreflight, name)
		}
		if err := dropDatabase(c, name); err != nil {
			return err
		}
		if l.LoadRole != "" {
			return dropSandbox(c, l.LoadRole)
		}
		return nil
	}
	return fmt.Errorf("%w: %q is not a database drconsole left on %s; not dropped", ErrPreflight, name, c.Server())
}

// Repair undoes what an interrupted swap of an older drconsole could leave: a live
// database refusing every connection (it committed ALLOW_CONNECTIONS false before its
// renames). That is an outage, so it is repaired without asking, but only for a database
// that is not itself a restore's copy and has one of a restore's databases beside it
// (<name>_restore_… or <name>_pre_restore_…). This drconsole never closes a database, so
// a copy refusing connections was closed by someone on purpose, and is left alone, as is
// every other database someone closed. It returns what it did, in words.
func Repair(ctx context.Context, c *Conn) ([]string, error) {
	admin, err := connectAdmin(ctx, c)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	rows, err := admin.Query(ctx, `SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), ''),
			EXISTS (SELECT 1 FROM pg_database s WHERE starts_with(s.datname, d.datname || '_restore_') OR starts_with(s.datname, d.datname || '_pre_restore_'))
		FROM pg_database d WHERE NOT d.datallowconn AND NOT d.datistemplate`)
	if err != nil {
		return nil, fmt.Errorf("%w: looking for databases that refuse connections: %v", ErrDatabase, pgMessage(err))
	}
	type closed struct {
		name, comment string
		sibling       bool
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (closed, error) {
		var x closed
		return x, r.Scan(&x.name, &x.comment, &x.sibling)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: looking for databases that refuse connections: %v", ErrDatabase, pgMessage(err))
	}
	var did []string
	for _, d := range list {
		if _, copy := leftoverOf(d.name, d.comment); copy || !d.sibling {
			continue
		}
		if _, marked := parseMarker(d.comment); marked {
			continue // a test restore's database: never swapped, never closed by drconsole
		}
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{d.name}.Sanitize()+" ALLOW_CONNECTIONS true"); err != nil {
			return did, fmt.Errorf("%w: %s refuses every connection and could not be reopened: %v", ErrDatabase, d.name, pgMessage(err))
		}
		did = append(did, fmt.Sprintf("%s refused every connection (left so by an interrupted swap); it accepts connections again", d.name))
	}
	roles, err := orphanSandboxes(ctx, admin)
	if err != nil {
		return did, err
	}
	for _, r := range roles {
		if err := dropSandbox(c, r.name); err != nil {
			return did, fmt.Errorf("%w: %v", ErrDatabase, err)
		}
		did = append(did, fmt.Sprintf("dropped %s, the loading role an interrupted restore of %s left (it owned nothing)", r.name, r.target))
	}
	return did, nil
}

type orphanRole struct{ name, target string }

// orphanSandboxes are the loading roles of restores that ended without dropping them and
// own no database: nothing depends on them. A role whose target's restore is running now
// (it is made in pre-flight, before its database) is not an orphan.
func orphanSandboxes(ctx context.Context, admin *pgx.Conn) ([]orphanRole, error) {
	rows, err := admin.Query(ctx, `SELECT r.rolname, coalesce(shobj_description(r.oid, 'pg_authid'), '') FROM pg_roles r
		WHERE starts_with(r.rolname, $1) AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datdba = r.oid)`, sandboxPrefix)
	if err != nil {
		return nil, fmt.Errorf("%w: listing loading roles: %v", ErrDatabase, pgMessage(err))
	}
	type row struct{ name, comment string }
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.name, &x.comment)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: listing loading roles: %v", ErrDatabase, pgMessage(err))
	}
	var out []orphanRole
	for _, x := range all {
		m, ok := parseMarker(x.comment)
		if !ok || m.Role != RoleSandbox || m.Target == "" {
			continue // not marked by drconsole: somebody's role with a look-alike name
		}
		held, err := lockHeld(ctx, admin, m.Target)
		if err != nil {
			return nil, fmt.Errorf("%w: reading the restore locks: %v", ErrDatabase, pgMessage(err))
		}
		if !held {
			out = append(out, orphanRole{x.name, m.Target})
		}
	}
	return out, nil
}

// Exists reports whether a database of that name is on the server.
func Exists(ctx context.Context, c *Conn, name string) (bool, error) {
	admin, err := connectAdmin(ctx, c)
	if err != nil {
		return false, err
	}
	defer admin.Close(context.Background())
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
	}
	return exists, nil
}
