package parallel

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"drconsole/recovery/pgarchive"
)

// plan is what the engine does with an archive, decided from its table of contents alone:
// which entries pg_restore restores before the data and after it, which data it loads,
// and which post-data entries it builds itself, in what order.
type plan struct {
	a        *pgarchive.Archive
	preData  []int // pg_restore, before the data: pre-data entries (not ACLs)
	postData []int // pg_restore, at the end: sequence values, triggers, rules, comments, ACLs, matview data, …
	data     map[int]*tableLoad
	blobs    map[int]bool // BLOBS entries: large objects' data
	items    []*item      // post-data the engine builds: indexes, constraints, foreign keys, index attachments
	byEntry  map[int]*item
	encoding string
	std      bool // standard_conforming_strings
}

// tableLoad is one TABLE DATA entry on its way into the database.
type tableLoad struct {
	entry *pgarchive.Entry
	copy  pgarchive.Copy
	sql   string
	table int // the TABLE entry it fills, 0 when not found

	// under the scheduler's lock
	pending  int   // chunks sent and not yet loaded
	read     bool  // every chunk of it has been sent
	done     bool  // read and every chunk loaded
	rows     int64 // rows loaded
	sent     int64 // rows sent
	bytes    int64 // bytes of COPY data sent
	waiters  []*item
	hasBlock bool
	end      chan struct{} // closed when every chunk of it has been handed out
}

// item is one post-data step the engine runs itself, in one transaction.
type item struct {
	entry      *pgarchive.Entry
	what       string // "index shop.line_key", for messages
	stmts      []string
	tablespace bool    // SET default_tablespace to the entry's first
	tables     []int   // TABLE entries it locks: shared for an index build, else exclusive
	exclusive  bool    // takes a lock that conflicts with any other work on its tables
	unique     *unique // a PRIMARY KEY or UNIQUE constraint that may be built as an index first
	last       bool    // finishing it finishes its TOC entry (counts as one built)
	table      int     // CONSTRAINT: its table
	waitItems  []*item // built before it
	waitData   []int   // TABLE DATA entries loaded before it
	dependents []*item // items waiting for it
	pending    int
	done       bool
	weight     int64 // rows of its tables: the biggest go first
	size       int64 // bytes of COPY data of its tables
	builds     bool  // it builds an index (the server may give it parallel workers)
	workers    int   // max_parallel_maintenance_workers for it
	claim      int   // CPUs it keeps busy while it runs: 1 + workers
}

// effectiveSections gives each entry the section pg_restore restores it in (an ACL or a
// comment goes with the entry before it), and refuses an archive whose pre-data comes
// after its data: pg_restore only warns, but splitting the restore around the data needs
// the order.
func effectiveSections(a *pgarchive.Archive) (map[int]pgarchive.Section, error) {
	out := make(map[int]pgarchive.Section, len(a.Entries))
	cur := pgarchive.SectionPreData
	for _, e := range a.Entries {
		switch e.Section {
		case pgarchive.SectionNone:
		case pgarchive.SectionPreData:
			if cur != pgarchive.SectionPreData {
				return nil, fmt.Errorf("the archive's entries are not in section order (%s %s after the data)", e.Desc, name(e))
			}
			cur = e.Section
		case pgarchive.SectionData:
			if cur == pgarchive.SectionPostData {
				return nil, fmt.Errorf("the archive's entries are not in section order (%s %s after post-data)", e.Desc, name(e))
			}
			cur = e.Section
		case pgarchive.SectionPostData:
			cur = e.Section
		default:
			return nil, fmt.Errorf("entry %d has an unknown section (%d)", e.ID, e.Section)
		}
		out[e.ID] = cur
	}
	return out, nil
}

// aclPass: pg_restore restores these after everything else (RESTORE_PASS_ACL and
// RESTORE_PASS_POST_ACL), so they stay at the end.
func aclPass(e *pgarchive.Entry) bool {
	switch e.Desc {
	case "ACL", "ACL LANGUAGE", "DEFAULT ACL", "EVENT TRIGGER", "MATERIALIZED VIEW DATA":
		return true
	case "COMMENT", "SECURITY LABEL":
		return strings.HasPrefix(e.Tag, "EVENT TRIGGER ")
	}
	return false
}

var (
	encodingRE   = regexp.MustCompile(`^SET client_encoding = '([A-Za-z0-9_]+)';\n$`)
	stdStringsRE = regexp.MustCompile(`^SET standard_conforming_strings = '(on|off)';\n$`)
)

const searchPathDefn = "SELECT pg_catalog.set_config('search_path', '', false);\n"

func name(e *pgarchive.Entry) string {
	if e.Namespace == "" {
		return e.Tag
	}
	return e.Namespace + "." + e.Tag
}

// newPlan reads the TOC; an error says, in one line, why the engine cannot restore this
// archive exactly as pg_restore would.
func newPlan(a *pgarchive.Archive) (*plan, error) {
	if !a.Version.AtLeast(1, 12) || a.Version.Int() > (pgarchive.Version{Major: 1, Minor: 16}).Int() {
		return nil, fmt.Errorf("archive version %s is not one the parallel engine knows (1.12 to 1.16)", a.Version)
	}
	if a.Compression != "none" && a.Compression != "gzip" {
		return nil, fmt.Errorf("its data blocks are compressed with %s", a.Compression)
	}
	if a.Raw == nil {
		return nil, fmt.Errorf("the archive's table of contents was not kept")
	}
	sections, err := effectiveSections(a)
	if err != nil {
		return nil, err
	}
	p := &plan{a: a, data: map[int]*tableLoad{}, blobs: map[int]bool{}, byEntry: map[int]*item{}}
	var haveEncoding, haveStd, havePath bool
	dataOf := map[int]int{} // TABLE → TABLE DATA
	for _, e := range a.Entries {
		if e.WithOIDs {
			return nil, fmt.Errorf("table %s has OIDs (an archive of PostgreSQL 11 or older)", name(e))
		}
		switch e.Desc {
		case "ENCODING":
			m := encodingRE.FindStringSubmatch(e.Defn)
			if m == nil {
				return nil, fmt.Errorf("unusual ENCODING entry %q", e.Defn)
			}
			p.encoding, haveEncoding = m[1], true
			continue
		case "STDSTRINGS":
			m := stdStringsRE.FindStringSubmatch(e.Defn)
			if m == nil {
				return nil, fmt.Errorf("unusual STDSTRINGS entry %q", e.Defn)
			}
			p.std, haveStd = m[1] == "on", true
			continue
		case "SEARCHPATH":
			if e.Defn != searchPathDefn {
				return nil, fmt.Errorf("unusual SEARCHPATH entry %q", e.Defn)
			}
			havePath = true
			continue
		case "TABLE DATA":
			if !e.HadDumper {
				return nil, fmt.Errorf("TABLE DATA %s has no data block", name(e))
			}
			c, err := pgarchive.ParseCopy(e.CopyStmt)
			if err != nil {
				return nil, fmt.Errorf("the data of %s is not COPY data (%v)", name(e), err)
			}
			t := &tableLoad{entry: e, copy: c, sql: c.SQL(), end: make(chan struct{})}
			for _, d := range e.Deps {
				if de := a.Entry(d); de != nil && de.Desc == "TABLE" {
					t.table = d
					dataOf[d] = e.ID
				}
			}
			p.data[e.ID] = t
			continue
		case "BLOBS":
			if !e.HadDumper {
				return nil, fmt.Errorf("BLOBS entry %d has no data block", e.ID)
			}
			p.blobs[e.ID] = true
			continue
		}
		if e.HadDumper {
			return nil, fmt.Errorf("unusual entry with data: %s %s", e.Desc, name(e))
		}
		if ownPostData(e) && sections[e.ID] == pgarchive.SectionPostData {
			it, err := p.newItem(e)
			if err != nil {
				return nil, err
			}
			p.items = append(p.items, it)
			p.byEntry[e.ID] = it
			continue
		}
		if sections[e.ID] == pgarchive.SectionPreData && !aclPass(e) {
			p.preData = append(p.preData, e.ID)
		} else {
			p.postData = append(p.postData, e.ID)
		}
	}
	if !haveEncoding || !haveStd || !havePath {
		return nil, fmt.Errorf("the archive lacks its ENCODING, STDSTRINGS or SEARCHPATH entry")
	}
	run1 := map[int]bool{}
	for _, id := range p.preData {
		run1[id] = true
	}
	// What each item waits for: items it depends on; the data of tables it depends on.
	for _, it := range p.items {
		seen := map[int]bool{}
		for _, d := range it.entry.Deps {
			if seen[d] {
				continue
			}
			seen[d] = true
			de := a.Entry(d)
			switch {
			case de == nil:
				// pg_restore ignores a dependency on an entry that is not there.
			case p.byEntry[d] != nil:
				it.waitItems = append(it.waitItems, p.byEntry[d])
			case p.data[d] != nil:
				it.waitData = append(it.waitData, d)
			case run1[d]:
				if td, ok := dataOf[d]; ok {
					it.waitData = append(it.waitData, td)
				}
			case de.Desc == "ENCODING" || de.Desc == "STDSTRINGS" || de.Desc == "SEARCHPATH" || p.blobs[d]:
			default:
				return nil, fmt.Errorf("%s needs %s %s, which pg_restore restores after it", it.what, de.Desc, name(de))
			}
		}
	}
	if err := acyclic(p.items); err != nil {
		return nil, err
	}
	for _, it := range p.items {
		it.tables = p.tablesOf(it.entry, map[int]bool{})
		if len(it.tables) == 0 {
			return nil, fmt.Errorf("%s is on no table of the archive", it.what)
		}
		if u := it.unique; u != nil {
			// The table the constraint is on, which must be the one its statement names.
			for _, d := range it.entry.Deps {
				if de := a.Entry(d); de != nil && de.Desc == "TABLE" && de.Namespace == u.schema && de.Tag == u.table {
					it.table = d
				}
			}
			if it.table == 0 {
				it.unique = nil
			}
		}
	}
	return p, nil
}

// acyclic refuses items that wait for each other in a loop: the scheduler would wait
// forever. pg_dump never writes one; a damaged or forged TOC might.
func acyclic(items []*item) error {
	state := map[*item]int{} // 1 visiting, 2 done
	var visit func(it *item) error
	visit = func(it *item) error {
		switch state[it] {
		case 1:
			return fmt.Errorf("%s depends on itself through the table of contents", it.what)
		case 2:
			return nil
		}
		state[it] = 1
		for _, w := range it.waitItems {
			if err := visit(w); err != nil {
				return err
			}
		}
		state[it] = 2
		return nil
	}
	for _, it := range items {
		if err := visit(it); err != nil {
			return err
		}
	}
	return nil
}

// ownPostData: the post-data entries the engine builds itself; the rest of post-data goes
// through pg_restore after them.
func ownPostData(e *pgarchive.Entry) bool {
	switch e.Desc {
	case "INDEX", "CONSTRAINT", "FK CONSTRAINT", "INDEX ATTACH":
		return true
	}
	return false
}

// tablesOf lists the tables (and materialized views) an entry works on: those it depends
// on, and those of the indexes and constraints it depends on.
func (p *plan) tablesOf(e *pgarchive.Entry, seen map[int]bool) []int {
	var out []int
	for _, d := range e.Deps {
		if seen[d] {
			continue
		}
		seen[d] = true
		de := p.a.Entry(d)
		if de == nil {
			continue
		}
		switch {
		case de.Desc == "TABLE" || de.Desc == "MATERIALIZED VIEW" || de.Desc == "FOREIGN TABLE":
			out = append(out, d)
		case p.byEntry[d] != nil:
			out = append(out, p.tablesOf(de, seen)...)
		}
	}
	sort.Ints(out)
	return out
}

var (
	// Every statement of an entry the engine runs must start with one of these: the
	// statements pg_dump writes for it, and nothing else.
	indexFirst = []string{"CREATE INDEX ", "CREATE UNIQUE INDEX "}
	alterNext  = []string{"ALTER TABLE ", "ALTER INDEX "}
)

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (p *plan) newItem(e *pgarchive.Entry) (*item, error) {
	it := &item{entry: e, last: true}
	stmts, err := splitStatements(e.Defn, p.std)
	if err != nil || len(stmts) == 0 {
		return nil, fmt.Errorf("unusual %s entry %s", e.Desc, name(e))
	}
	first := alterNext
	switch e.Desc {
	case "INDEX":
		it.what, first, it.tablespace = "index "+name(e), indexFirst, true
		it.exclusive = len(stmts) > 1 // CLUSTER ON, REPLICA IDENTITY, SET STATISTICS
	case "CONSTRAINT":
		it.what, it.tablespace, it.exclusive = "constraint "+name(e), true, true
		it.unique = parseUnique(stmts[0])
	case "FK CONSTRAINT":
		it.what, it.exclusive = "foreign key "+name(e), true
		first = []string{"ALTER TABLE "}
	case "INDEX ATTACH":
		it.what, it.exclusive = "index attachment "+name(e), true
		first = []string{"ALTER INDEX "}
	}
	for i, s := range stmts {
		if i == 0 && !hasPrefix(s, first) || i > 0 && !hasPrefix(s, alterNext) {
			return nil, fmt.Errorf("unusual %s entry %s: %q", e.Desc, name(e), abbreviate(s))
		}
	}
	it.stmts = stmts
	it.builds = e.Desc == "INDEX" || it.unique != nil
	return it, nil
}

// unique is a PRIMARY KEY or UNIQUE constraint as pg_dump writes it, read.
type unique struct {
	schema, table, name string
	kind                string // "PRIMARY KEY" or "UNIQUE"
	nullsNotDistinct    bool
	columns, include    []string
	with                string // "(fillfactor='70')", or ""
}

// parseUnique reads "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT c PRIMARY KEY (a, b)
// [INCLUDE (…)] [WITH (…)]"; nil for anything else (DEFERRABLE, EXCLUDE, …), which is
// then run as it is.
func parseUnique(stmt string) *unique {
	s, ok := strings.CutPrefix(stmt, "ALTER TABLE ONLY ")
	if !ok {
		return nil
	}
	u := &unique{}
	if u.schema, s, ok = pgarchive.CutIdent(s); !ok || !strings.HasPrefix(s, ".") {
		return nil
	}
	if u.table, s, ok = pgarchive.CutIdent(s[1:]); !ok {
		return nil
	}
	if s, ok = strings.CutPrefix(s, "\n    ADD CONSTRAINT "); !ok {
		return nil
	}
	if u.name, s, ok = pgarchive.CutIdent(s); !ok {
		return nil
	}
	switch {
	case strings.HasPrefix(s, " PRIMARY KEY "):
		u.kind, s = "PRIMARY KEY", s[len(" PRIMARY KEY "):]
	case strings.HasPrefix(s, " UNIQUE "):
		u.kind, s = "UNIQUE", s[len(" UNIQUE "):]
	default:
		return nil
	}
	if rest, ok := strings.CutPrefix(s, "NULLS NOT DISTINCT "); ok {
		u.nullsNotDistinct, s = true, rest
	}
	if u.columns, s, ok = cutIdentList(s); !ok {
		return nil
	}
	if rest, ok := strings.CutPrefix(s, " INCLUDE "); ok {
		if u.include, s, ok = cutIdentList(rest); !ok {
			return nil
		}
	}
	if rest, ok := strings.CutPrefix(s, " WITH ("); ok {
		end := strings.IndexByte(rest, ')')
		if end < 0 || strings.ContainsAny(rest[:end], "();\"") {
			return nil
		}
		u.with, s = "("+rest[:end]+")", rest[end+1:]
	}
	if s != "" {
		return nil
	}
	return u
}

// cutIdentList reads "(a, "B c")".
func cutIdentList(s string) ([]string, string, bool) {
	s, ok := strings.CutPrefix(s, "(")
	if !ok {
		return nil, "", false
	}
	var out []string
	for {
		var id string
		if id, s, ok = pgarchive.CutIdent(s); !ok {
			return nil, "", false
		}
		out = append(out, id)
		if rest, ok := strings.CutPrefix(s, ", "); ok {
			s = rest
			continue
		}
		if rest, ok := strings.CutPrefix(s, ")"); ok {
			return out, rest, true
		}
		return nil, "", false
	}
}

func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = pgarchive.QuoteIdent(id)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// split turns a PRIMARY KEY or UNIQUE constraint on a plain table into two items: the
// unique index, built under a lock that lets the table's other indexes build beside it,
// then the constraint attached to it (ALTER TABLE … USING INDEX, a moment's exclusive
// lock), which is what pg_restore's one ALTER TABLE does, holding the exclusive lock
// for the whole build.
func (p *plan) split(it *item) *item {
	u := it.unique
	table := pgarchive.QuoteIdent(u.schema) + "." + pgarchive.QuoteIdent(u.table)
	idx := "CREATE UNIQUE INDEX " + pgarchive.QuoteIdent(u.name) + " ON " + table + " USING btree " + quoteList(u.columns)
	if u.include != nil {
		idx += " INCLUDE " + quoteList(u.include)
	}
	if u.nullsNotDistinct {
		idx += " NULLS NOT DISTINCT"
	}
	if u.with != "" {
		idx += " WITH " + u.with
	}
	build := &item{entry: it.entry, what: it.what + " (its index)", stmts: []string{idx}, tablespace: true,
		tables: it.tables, table: it.table, waitItems: it.waitItems, waitData: it.waitData, builds: true}
	attach := "ALTER TABLE ONLY " + table + " ADD CONSTRAINT " + pgarchive.QuoteIdent(u.name) + " " + u.kind + " USING INDEX " + pgarchive.QuoteIdent(u.name)
	it.stmts = append([]string{attach}, it.stmts[1:]...)
	it.waitItems, it.waitData, it.tablespace, it.builds = []*item{build}, nil, false, false
	return build
}

func abbreviate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
