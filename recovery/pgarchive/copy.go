package pgarchive

import (
	"strings"
)

// Copy is a TABLE DATA entry's COPY statement, read: which table its rows go into and
// which columns they fill, in order.
type Copy struct {
	Schema  string
	Table   string
	Columns []string // nil when the statement names none (a table without columns)
}

// QualifiedName is schema.table, unquoted, the way pg_restore --verbose names tables.
func (c Copy) QualifiedName() string {
	if c.Schema == "" {
		return c.Table
	}
	return c.Schema + "." + c.Table
}

// SQL is the COPY statement again, every identifier quoted.
func (c Copy) SQL() string {
	var b strings.Builder
	b.WriteString("COPY ")
	if c.Schema != "" {
		b.WriteString(QuoteIdent(c.Schema) + ".")
	}
	b.WriteString(QuoteIdent(c.Table))
	if c.Columns != nil {
		b.WriteString(" (")
		for i, col := range c.Columns {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(QuoteIdent(col))
		}
		b.WriteString(")")
	}
	b.WriteString(" FROM stdin")
	return b.String()
}

// QuoteIdent quotes an identifier for SQL, always.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ParseCopy reads the COPY statement pg_dump writes for a table's data,
// "COPY schema.table (col, …) FROM stdin;\n", and nothing else: anything else is an error
// (ErrUnsupported).
func ParseCopy(stmt string) (Copy, error) {
	bad := func() (Copy, error) {
		return Copy{}, errorf(ErrUnsupported, "COPY statement %q", abbreviate(stmt))
	}
	s, ok := strings.CutPrefix(stmt, "COPY ")
	if !ok {
		return bad()
	}
	var c Copy
	name, s, ok := CutIdent(s)
	if !ok {
		return bad()
	}
	if strings.HasPrefix(s, ".") {
		c.Schema = name
		if c.Table, s, ok = CutIdent(s[1:]); !ok {
			return bad()
		}
	} else {
		c.Table = name
	}
	s = strings.TrimLeft(s, " ")
	if strings.HasPrefix(s, "(") {
		s = s[1:]
		c.Columns = []string{}
		for {
			col, rest, ok := CutIdent(strings.TrimLeft(s, " "))
			if !ok {
				return bad()
			}
			c.Columns = append(c.Columns, col)
			s = rest
			if strings.HasPrefix(s, ", ") {
				s = s[2:]
				continue
			}
			if !strings.HasPrefix(s, ")") {
				return bad()
			}
			s = strings.TrimLeft(s[1:], " ")
			break
		}
	}
	if s != "FROM stdin;\n" && s != "FROM stdin;" {
		return bad()
	}
	return c, nil
}

// CutIdent reads one identifier at the start of s as pg_dump's fmtId writes it: "quoted"
// with doubled quotes, or plain lower case.
func CutIdent(s string) (ident, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != '"' {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			if b.Len() == 0 {
				return "", "", false
			}
			return b.String(), s[i+1:], true
		}
		return "", "", false
	}
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return "", "", false
	}
	return s[:i], s[i:], true
}

func abbreviate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
