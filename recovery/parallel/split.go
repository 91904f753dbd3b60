package parallel

import (
	"errors"
	"strings"
)

var errUnterminated = errors.New("unterminated quote or comment")

// splitStatements splits a TOC entry's SQL into its statements at top-level semicolons,
// the way the server's lexer reads them: quoted identifiers, string constants (with
// backslash escapes in E” strings, and in plain ones when standard_conforming_strings is
// off), dollar quotes and comments. Each statement is trimmed and has no semicolon.
//
// The engine runs each statement on its own over the extended protocol, where the server
// refuses a string holding two, so a statement this misreads fails; it never runs unseen.
func splitStatements(sql string, stdStrings bool) ([]string, error) {
	var out []string
	start := 0
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ';':
			if s := strings.TrimSpace(sql[start:i]); s != "" {
				out = append(out, s)
			}
			i++
			start = i
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 1
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth, j := 1, i+2
			for depth > 0 {
				if j >= len(sql) {
					return nil, errUnterminated
				}
				switch {
				case strings.HasPrefix(sql[j:], "/*"):
					depth++
					j += 2
				case strings.HasPrefix(sql[j:], "*/"):
					depth--
					j += 2
				default:
					j++
				}
			}
			i = j
		case c == '"':
			j, err := skipQuoted(sql, i+1, '"', false)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '\'':
			escapes := !stdStrings || i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isIdentChar(sql[i-2]))
			j, err := skipQuoted(sql, i+1, '\'', escapes)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$' && (i == 0 || !isIdentChar(sql[i-1])):
			tag, ok := dollarTag(sql[i:])
			if !ok {
				i++
				continue
			}
			j := strings.Index(sql[i+len(tag):], tag)
			if j < 0 {
				return nil, errUnterminated
			}
			i += len(tag) + j + len(tag)
		default:
			i++
		}
	}
	if s := strings.TrimSpace(sql[start:]); s != "" {
		out = append(out, s)
	}
	return out, nil
}

// skipQuoted returns the index after the quote closing a constant or identifier that
// starts at from; a doubled quote is one quote, and with escapes a backslash escapes the
// next byte.
func skipQuoted(s string, from int, q byte, escapes bool) (int, error) {
	for j := from; j < len(s); j++ {
		switch {
		case escapes && s[j] == '\\':
			j++
		case s[j] == q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, errUnterminated
}

// dollarTag reads "$tag$" at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1], true
		}
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || j > 1 && c >= '0' && c <= '9') {
			return "", false
		}
	}
	return "", false
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
