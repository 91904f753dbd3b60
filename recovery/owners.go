package recovery

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"drconsole/recovery/pgarchive"
)

// A backup loaded as the sandbox role (sandbox.go) leaves every object owned by that
// role. Once the load is checked, drconsole gives each object to the owner the backup
// names, as the superuser, but never by running the backup's text: it finds the object
// in the restored catalog by the name the backup gives it, only among the sandbox's
// objects, and writes the ALTER … OWNER TO itself from what the catalog says. What it
// cannot place that way goes to the backup's main owner, and the operator is told.

// ownedObject is the backup saying that an object belongs to a role.
type ownedObject struct {
	Kind  string // pg_dump's word for it: TABLE, VIEW, SEQUENCE, FUNCTION, BLOB, …
	Name  string // as ALTER … OWNER TO names it in a plain dump: qualified and quoted
	Owner string
}

// ownership is what a backup says about owners and default privileges, gathered from
// its table of contents or, in a plain dump, from the statements the sandbox may not run.
type ownership struct {
	objects []ownedObject
	// defaultACL are ALTER DEFAULT PRIVILEGES FOR ROLE … statements: only a member of that
	// role may run them, so drconsole runs them after the load, each checked to be exactly
	// one such statement. They change nothing but the scratch database's defaults.
	defaultACL []string
}

// mainOwner is the role most of the backup's objects belong to ("" when it names none).
func (o *ownership) mainOwner() string {
	count := map[string]int{}
	for _, x := range o.objects {
		if x.Owner != "" {
			count[x.Owner]++
		}
	}
	best := ""
	for r, n := range count {
		if n > count[best] || n == count[best] && r < best {
			best = r
		}
	}
	return best
}

// ownerLookup finds, among the sandbox's objects ($2 is its OID), the one a backup names
// ($1), and returns how ALTER names it and the command's kind.
var ownerLookups = map[string]string{
	"relation": `SELECT c.oid::regclass::text, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
			WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END
		FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relowner = $2`,
	"schema": `SELECT quote_ident(nspname), 'SCHEMA' FROM pg_namespace WHERE oid = to_regnamespace($1) AND nspowner = $2`,
	"type": `SELECT t.oid::regtype::text, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
		FROM pg_type t WHERE t.oid = to_regtype($1) AND t.typowner = $2`,
	"routine": `SELECT p.oid::regprocedure::text, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.proowner = $2 AND format('%s.%s(%s)', quote_ident(n.nspname), quote_ident(p.proname), pg_get_function_identity_arguments(p.oid)) = $1`,
	"largeobject": `SELECT oid::text, 'LARGE OBJECT' FROM pg_largeobject_metadata WHERE oid::text = $1 AND lomowner = $2`,
}

// ownerClass is which lookup finds an object of a pg_dump kind ("" for kinds that go to
// the main owner).
func ownerClass(kind string) string {
	switch kind {
	case "TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE":
		return "relation"
	case "SCHEMA":
		return "schema"
	case "TYPE", "DOMAIN":
		return "type"
	case "FUNCTION", "PROCEDURE", "AGGREGATE":
		return "routine"
	case "BLOB", "LARGE OBJECT":
		return "largeobject"
	}
	return ""
}

// settleOwners hands the sandbox's objects in the scratch database to the owners the
// backup names, runs its default privileges, and leaves the sandbox owning nothing there.
// mainOwner is who gets the rest: the backup's main owner, or (NoOwner, a backup naming
// no owner) the role drconsole connects as. It returns what the operator should know.
func (p *Plan) settleOwners(ctx context.Context, own *ownership) (warnings []string, err error) {
	conn, err := p.opts.Conn.connect(ctx, p.Scratch, "drconsole: setting owners")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var sandboxOID uint32
	if err := conn.QueryRow(ctx, `SELECT oid FROM pg_roles WHERE rolname = $1`, p.sandbox.role).Scan(&sandboxOID); err != nil {
		return nil, fmt.Errorf("%w: finding the loading role %s: %v", ErrDatabase, p.sandbox.role, pgMessage(err))
	}
	existing, err := roleNames(ctx, conn)
	if err != nil {
		return nil, err
	}
	main := own.mainOwner()
	if p.opts.NoOwner || main == "" || !existing[main] {
		if main != "" && !existing[main] && !p.opts.NoOwner {
			warnings = append(warnings, fmt.Sprintf("the backup's objects belong to role %q, which does not exist on %s; they belong to %q", main, p.Server, p.opts.Conn.User))
		}
		main = ""
	}
	var misplaced []string
	if main != "" {
		// Tables before their sequences: ALTER TABLE carries a table's own sequences
		// along, and those are then no longer the sandbox's to look up.
		objs := append([]ownedObject(nil), own.objects...)
		sort.SliceStable(objs, func(i, j int) bool { return ownerRank(objs[i].Kind) < ownerRank(objs[j].Kind) })
		for _, o := range objs {
			if o.Owner == "" || o.Owner == main {
				continue
			}
			class := ownerClass(o.Kind)
			if class == "" || !existing[o.Owner] {
				misplaced = append(misplaced, fmt.Sprintf("%s %s (%s)", strings.ToLower(o.Kind), printable([]byte(o.Name), 80), o.Owner))
				continue
			}
			var name, alter string
			err := conn.QueryRow(ctx, ownerLookups[class], o.Name, sandboxOID).Scan(&name, &alter)
			if err == nil {
				_, err = conn.Exec(ctx, "ALTER "+alter+" "+name+" OWNER TO "+pgx.Identifier{o.Owner}.Sanitize())
			}
			if err != nil && err != pgx.ErrNoRows {
				if ctx.Err() != nil {
					return warnings, ctx.Err()
				}
				misplaced = append(misplaced, fmt.Sprintf("%s %s (%s: %s)", strings.ToLower(o.Kind), printable([]byte(o.Name), 80), o.Owner, pgMessage(err)))
			}
		}
	}
	if len(misplaced) > 0 {
		shown := misplaced[:min(len(misplaced), 3)]
		more := ""
		if len(misplaced) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(misplaced)-len(shown))
		}
		to := main
		if to == "" {
			to = p.opts.Conn.User
		}
		warnings = append(warnings, fmt.Sprintf("owners not restored exactly: %s%s belong to %q", strings.Join(shown, ", "), more, to))
	}
	to := "CURRENT_USER"
	if main != "" {
		to = pgx.Identifier{main}.Sanitize()
	}
	if _, err := conn.Exec(ctx, "REASSIGN OWNED BY "+pgx.Identifier{p.sandbox.role}.Sanitize()+" TO "+to); err != nil {
		return warnings, fmt.Errorf("%w: giving the restored objects to their owner: %v", ErrDatabase, pgMessage(err))
	}
	if !p.opts.NoOwner {
		for _, s := range own.defaultACL {
			if !defaultACLRE.MatchString(s) || !singleStatement(s) {
				warnings = append(warnings, "default privileges not restored (not one ALTER DEFAULT PRIVILEGES statement): "+printable([]byte(s), 120))
				continue
			}
			if _, err := conn.Exec(ctx, s); err != nil {
				warnings = append(warnings, fmt.Sprintf("default privileges not restored: %s: %s", printable([]byte(s), 120), pgMessage(err)))
			}
		}
	}
	// Whatever the backup granted the sandbox by name (it cannot know it, but still), and
	// PUBLIC's default rights on the database, taken while it loaded.
	for _, s := range []string{
		"DROP OWNED BY " + pgx.Identifier{p.sandbox.role}.Sanitize(),
		"GRANT CONNECT, TEMPORARY ON DATABASE " + pgx.Identifier{p.Scratch}.Sanitize() + " TO PUBLIC",
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return warnings, fmt.Errorf("%w: %s: %v", ErrDatabase, s, pgMessage(err))
		}
	}
	return warnings, nil
}

var defaultACLRE = regexp.MustCompile(`(?is)^\s*ALTER\s+DEFAULT\s+PRIVILEGES\s+FOR\s+(ROLE|USER)\s`)

// singleStatement: s is one statement, however it is quoted inside.
func singleStatement(s string) bool {
	sc := newSQLScanner(strings.NewReader(s))
	if _, err := sc.next(); err != nil {
		return false
	}
	_, err := sc.next()
	return err == io.EOF
}

func ownerRank(kind string) int {
	switch kind {
	case "SCHEMA":
		return 0
	case "TABLE", "FOREIGN TABLE", "VIEW", "MATERIALIZED VIEW":
		return 1
	case "SEQUENCE":
		return 2
	}
	return 3
}

// roleNames is every role on the server.
func roleNames(ctx context.Context, conn *pgx.Conn) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT rolname FROM pg_roles`)
	if err != nil {
		return nil, fmt.Errorf("%w: listing roles: %v", ErrDatabase, pgMessage(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%w: listing roles: %v", ErrDatabase, pgMessage(err))
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// plainOwnerRE reads pg_dump's ALTER <kind> <name> OWNER TO <role>; in a plain dump.
var plainOwnerRE = regexp.MustCompile(`(?is)^\s*ALTER\s+(TABLE|VIEW|MATERIALIZED\s+VIEW|SEQUENCE|FOREIGN\s+TABLE|SCHEMA|TYPE|DOMAIN|FUNCTION|PROCEDURE|AGGREGATE|LARGE\s+OBJECT|[A-Z ]+?)\s+(.+?)\s+OWNER\s+TO\s+("(?:[^"]|"")+"|[^\s;]+)\s*;?\s*$`)

// plainOwner reads an ALTER … OWNER TO statement of a plain dump.
func plainOwner(stmt string) (ownedObject, bool) {
	m := plainOwnerRE.FindStringSubmatch(stmt)
	if m == nil {
		return ownedObject{}, false
	}
	kind := strings.ToUpper(strings.Join(strings.Fields(m[1]), " "))
	return ownedObject{Kind: kind, Name: m[2], Owner: unquoteIdent(m[3])}, true
}

// unquoteIdent is the name an SQL identifier stands for.
func unquoteIdent(s string) string {
	if strings.HasPrefix(s, `"`) && strings.HasSuffix(s, `"`) && len(s) >= 2 {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return strings.ToLower(s)
}

// tocOwner is what an archive's entry says about its object's owner, naming the object
// as a plain dump's ALTER … OWNER TO would. Entries that are not objects of their own
// (data, indexes, comments, privileges) say nothing.
func tocOwner(e *pgarchive.Entry) (ownedObject, bool) {
	if e.Owner == "" {
		return ownedObject{}, false
	}
	o := ownedObject{Kind: e.Desc, Owner: e.Owner}
	switch e.Desc {
	case "TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE", "TYPE", "DOMAIN":
		o.Name = pgx.Identifier{e.Namespace, e.Tag}.Sanitize()
	case "SCHEMA":
		o.Name = pgx.Identifier{e.Tag}.Sanitize()
	case "FUNCTION", "PROCEDURE", "AGGREGATE":
		// The drop statement names it exactly: DROP FUNCTION ns.name(a integer);
		m := dropRoutineRE.FindStringSubmatch(e.DropStmt)
		if m == nil {
			return ownedObject{}, false
		}
		o.Name = m[1]
	case "BLOB":
		o.Name = e.Tag
	case "COLLATION", "CONVERSION", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "TEXT SEARCH DICTIONARY",
		"TEXT SEARCH CONFIGURATION", "FOREIGN DATA WRAPPER", "SERVER", "EVENT TRIGGER", "PUBLICATION", "STATISTICS":
		// Not placed one by one: they go to the main owner, with a warning when theirs differs.
		o.Name = e.Tag
		if e.Namespace != "" {
			o.Name = e.Namespace + "." + e.Tag
		}
	default:
		return ownedObject{}, false
	}
	return o, true
}

var dropRoutineRE = regexp.MustCompile(`(?is)^\s*DROP\s+(?:FUNCTION|PROCEDURE|AGGREGATE)\s+(?:IF\s+EXISTS\s+)?(.+?)\s*;\s*$`)
