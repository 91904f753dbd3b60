package recovery

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSQLGuardKnowsCOPYData(t *testing.T) {
	cases := []struct {
		name, sql string
		refuse    bool
	}{
		{"plain dump", "SET x = 1;\nCREATE TABLE t (a text);\nCOPY public.t (a) FROM stdin;\nrow\n\\.\n", false},
		{"COPY data that looks like a switch", "COPY public.audit (stmt, at) FROM stdin;\nCREATE DATABASE evil\t2024\nDROP DATABASE x\t2024\n\\connect y\t1\n\\.\nSELECT 1;\n", false},
		{"connect after COPY ends", "COPY public.t (a) FROM stdin;\nx\n\\.\n\\connect spywatcher\n", true},
		{"first line", "\\connect spywatcher\nSELECT 1;\n", true},
		{"last line without newline", "SELECT 1;\nCREATE DATABASE other", true},
		{"pg_dump -C", "--\n-- PostgreSQL database dump\n--\n\nCREATE DATABASE spywatcher WITH TEMPLATE = template0;\n\\connect spywatcher\n", true},
		{"CRLF", "SELECT 1;\r\n\\c other\r\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The stream guard, fed in tiny reads so lines straddle reads.
			_, err := io.Copy(io.Discard, &sqlGuard{r: &oneByteReader{strings.NewReader(c.sql)}})
			if refused := errors.Is(err, ErrPreflight); refused != c.refuse {
				t.Errorf("stream: err = %v, want refused %v", err, c.refuse)
			}
			// The pre-flight look at the head.
			err = scanSQLHead(bufio.NewReader(strings.NewReader(c.sql)))
			if refused := errors.Is(err, ErrPreflight); refused != c.refuse {
				t.Errorf("head: err = %v, want refused %v", err, c.refuse)
			}
		})
	}
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 3 {
		p = p[:3]
	}
	return o.r.Read(p)
}
