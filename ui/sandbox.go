package ui

import (
	"path/filepath"
	"strconv"
	"strings"

	"drconsole/checklists"
	"drconsole/recovery"
)

// sandboxTools are the programs a drill runs for real in its sandbox: they reach only the
// server they are pointed at, and a sandbox drill points them at the sandbox.
var sandboxTools = map[string]bool{"psql": true, "pg_isready": true}

// writes are psql's options that write a file here.
var writes = map[string]bool{"-o": true, "--output": true, "-L": true, "--log-file": true}

// sandboxArgv is how a runbook command runs in a drill's sandbox, or false when it is only
// recorded there. A sql: command runs through psql against the sandbox's database. A run:
// command runs when it is one psql or pg_isready call with plain words only (no shell:
// no pipe, redirection, variable or quoting) whose host, port and database, where it
// names them, are the sandbox's; it runs without a shell, with the sandbox's
// connection in its environment, so nothing else can be reached. Options that write a
// file here (-o, -L) keep it recorded only.
func sandboxArgv(c checklists.Command, cn *recovery.Conn) ([]string, bool) {
	if cn == nil {
		return nil, false
	}
	if c.SQL != "" {
		return []string{"psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", c.SQL}, true
	}
	words := strings.Fields(c.Run)
	if len(words) == 0 || !sandboxTools[words[0]] || strings.ContainsAny(c.Run, "|&;<>()$`\\\"'*?[]{}~!#\n") {
		return nil, false
	}
	want := map[string]string{
		"-h": cn.Host, "--host": cn.Host,
		"-p": strconv.Itoa(int(cn.Port)), "--port": strconv.Itoa(int(cn.Port)),
		"-d": cn.Database, "--dbname": cn.Database,
	}
	for i := 1; i < len(words); i++ {
		w := words[i]
		flag, val, inline := strings.Cut(w, "=")
		if !inline && len(w) > 2 && strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "--") {
			if _, ok := want[w[:2]]; ok { // -hHOST
				flag, val, inline = w[:2], w[2:], true
			}
		}
		if writes[flag] || (len(w) > 2 && !strings.HasPrefix(w, "--") && writes[w[:2]]) {
			return nil, false // output written to a file on this machine
		}
		exp, named := want[flag]
		if !named {
			if !strings.HasPrefix(w, "-") && w != cn.Database && w != cn.User {
				return nil, false // a database (or connection string) that is not the sandbox's
			}
			continue
		}
		if !inline {
			if i+1 >= len(words) {
				return nil, false
			}
			i++
			val = words[i]
		}
		if flag == "-h" || flag == "--host" {
			val, exp = filepath.Clean(val), filepath.Clean(exp)
		}
		if val != exp {
			return nil, false
		}
	}
	return words, true
}
