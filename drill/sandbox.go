// Package drill builds a training sandbox: a throwaway PostgreSQL cluster on this machine
// holding a database shaped like the application's, a week of encrypted, signed backups
// at simulated times in a primary and a secondary location, a drill key, and the
// scenario's fault injected for real. Nothing outside the sandbox's directory is read or
// touched: the console that opens on it gets the sandbox's settings and nothing else.
package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// Sizes of the application's data.
var Sizes = map[string]struct{ Users, Guilds, Events int }{
	"small":  {2_000, 200, 20_000},
	"medium": {20_000, 2_000, 500_000},
	"large":  {200_000, 20_000, 5_000_000},
}

// Scenarios whose fault a sandbox injects, by the runbook's scenario IDs.
const (
	Corruption     = "database-corruption"
	Infrastructure = "infrastructure-failure"
	Regional       = "regional-outage"
	Ransomware     = "ransomware"
)

// Scenarios are the scenarios a sandbox can be built for, in the runbook's order.
var Scenarios = []string{Corruption, Infrastructure, Regional, Ransomware}

// CheckScenario says, in one line, when id is not a scenario a sandbox can be built for.
func CheckScenario(id string) error {
	if slices.Contains(Scenarios, id) {
		return nil
	}
	return fmt.Errorf("unknown scenario %q (one of: %s)", id, strings.Join(Scenarios, ", "))
}

// Options say what sandbox to build.
type Options struct {
	Scenario string
	Size     string
	Seed     uint64
	Parent   string // where the sandbox's directory goes ("" = the temp dir)
	// ConfigExtra is appended to the sandbox's drconsole.yaml: the operator's notify
	// channels marked for drills, and only those.
	ConfigExtra string
	Now         time.Time // the drill's "now"; zero = time.Now()
	Log         func(string)
}

// Sandbox is a built sandbox.
type Sandbox struct {
	Dir      string // everything is under it
	Database string // the application's database: the restore target
	Port     int
	Config   string // drconsole.yaml: the two locations, the drill's signer key
	Secret   string // the drill key (decrypts the backups)
	Public   string
	StateDir string // incident journals of the drill
	Fault    string // what was done, in a sentence, for the facilitator
	// Truth is each table's rows before the fault: what a correct recovery brings back
	// (for the backup the trainee should choose).
	Truth map[string]int64
	// PassEnv are variables of this machine the sandbox's console may read: the secrets
	// its drill notify channels name (url_env, password_env, routing_key_env).
	PassEnv map[string]string
	// Prints are each table's fingerprint (rows and an MD5 of them in key order) at the
	// same moment: what Score compares the recovered database with.
	Prints  map[string]string
	Backups []string // names, oldest first
	// Clean is the backup a correct recovery restores: the newest, or in a ransomware
	// drill the last one taken before the attack. Infected are those taken after it.
	Clean    string
	Infected []string
	// FaultAt is a moment just before the fault (the attack, in a ransomware drill), and
	// BeforeFault each table's fingerprint then: what recovering to a point in time between
	// the last commit before it and FaultAt brings back.
	FaultAt     time.Time
	BeforeFault map[string]string

	bin     string              // the server's binaries
	answers map[string]answerOf // what restoring a backup brings back, for the last two
}

// answerOf is what restoring one backup brings back: each table's rows and fingerprint.
type answerOf struct {
	truth  map[string]int64
	prints map[string]string
}

// Env is the whole environment the sandbox's console and commands see: the sandbox's
// server, locations, state and key, and nothing of this machine's own settings.
func (s *Sandbox) Env() map[string]string {
	env := map[string]string{
		"DB_HOST":          s.Dir,
		"DB_PORT":          strconv.Itoa(s.Port),
		"DB_USER":          "postgres",
		"DB_NAME":          s.Database,
		"DRCONSOLE_CONFIG": s.Config,
		"XDG_STATE_HOME":   s.StateDir,
		"HOME":             s.Dir,
		"USER":             os.Getenv("USER"),
		"TERM":             os.Getenv("TERM"),
		"NO_COLOR":         os.Getenv("NO_COLOR"),
		"PATH":             os.Getenv("PATH"),
	}
	for k, v := range s.PassEnv {
		if _, taken := env[k]; !taken {
			env[k] = v
		}
	}
	return env
}

// Build makes the sandbox. On failure nothing is left.
func Build(ctx context.Context, o Options) (s *Sandbox, err error) {
	say := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, args...))
		}
	}
	size, ok := Sizes[o.Size]
	if !ok {
		return nil, fmt.Errorf("size %q: small, medium or large", o.Size)
	}
	if err := CheckScenario(o.Scenario); err != nil {
		return nil, err
	}
	bin, err := serverBinaries()
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	dir, err := os.MkdirTemp(o.Parent, "drconsole-drill-")
	if err != nil {
		return nil, err
	}
	s = &Sandbox{Dir: dir, Database: "spywatcher", bin: bin, StateDir: filepath.Join(dir, "state"), answers: map[string]answerOf{}}
	defer func() {
		if err != nil {
			s.Remove()
			s = nil
		}
	}()
	if err := os.Chmod(dir, 0o700); err != nil {
		return s, err
	}
	// Whose it is: a sandbox whose drill died without removing it is found by the next.
	if err := wal.MarkOwner(dir); err != nil {
		return s, err
	}
	if s.Port, err = wal.FreePort(); err != nil {
		return s, err
	}
	say("starting a throwaway PostgreSQL cluster in %s", dir)
	if err := s.startCluster(ctx); err != nil {
		return s, err
	}
	if err := s.makeKey(); err != nil {
		return s, err
	}
	cn, err := recovery.ResolveConn("", func(k string) string { return s.Env()[k] })
	if err != nil {
		return s, err
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x6472696c6c))
	if err := s.sql(ctx, "postgres", "CREATE DATABASE "+s.Database); err != nil {
		return s, err
	}
	if err := s.sql(ctx, s.Database, appSchema); err != nil {
		return s, err
	}
	// A week of backups: the data grows a little each day, a full backup at 02:00 and
	// incrementals every six hours on the last day, as the runbook's jobs take them.
	primary := storage.NewDir("primary", filepath.Join(dir, "backups", "primary"))
	secondary := storage.NewDir("secondary", filepath.Join(dir, "backups", "secondary"))
	keys, err := recovery.ReadKeyFile(s.Secret)
	if err != nil {
		return s, err
	}
	day := time.Date(now.Year(), now.Month(), now.Day(), 2, 0, 0, 0, time.UTC)
	if day.After(now) {
		day = day.AddDate(0, 0, -1)
	}
	var times []time.Time
	for d := 6; d >= 0; d-- {
		times = append(times, day.AddDate(0, 0, -d))
	}
	for h := 8; day.Add(time.Duration(h)*time.Hour).Before(now) && h <= 20; h += 6 {
		times = append(times, day.Add(time.Duration(h)*time.Hour))
	}
	// The base backup point-in-time recovery starts from: taken now, before the week's data.
	say("taking a base backup (the WAL archive, from here on, reaches any moment up to the fault)")
	for _, loc := range []storage.Location{primary, secondary} {
		if err := os.MkdirAll(loc.String(), 0o700); err != nil {
			return s, err
		}
	}
	if _, err := wal.TakeBase(ctx, wal.BaseOptions{Conn: cn, Recipients: keys, Prefix: s.Database,
		Targets: []storage.Folder{storage.BasesOf(primary), storage.BasesOf(secondary)}}); err != nil {
		return s, fmt.Errorf("base backup: %w", err)
	}
	say("loading %s data and taking %d backups at simulated times", o.Size, len(times))
	users := 0
	infectedFrom := -1
	if o.Scenario == Ransomware {
		infectedFrom = len(times) - 2 // the last two backups were taken after the attack
	}
	for i, t := range times {
		grow := size.Users / len(times)
		if err := s.sql(ctx, s.Database, fmt.Sprintf(dataStep, users, grow, size.Guilds/len(times), size.Events/len(times), r.Int64N(1<<30))); err != nil {
			return s, err
		}
		users += grow
		if i == infectedFrom {
			if err := s.beforeFault(ctx); err != nil {
				return s, err
			}
			if err := s.sql(ctx, s.Database, ransom); err != nil {
				return s, err
			}
		}
		truth := i == infectedFrom-1 || (infectedFrom < 0 && i == len(times)-1)
		// The right answer, and the one before it: the answer an inject that damages the
		// newest backup leaves.
		var now answerOf
		if truth || i == len(times)-2 {
			if now.truth, err = s.counts(ctx); err != nil {
				return s, err
			}
			if now.prints, err = s.Fingerprints(ctx); err != nil {
				return s, err
			}
		}
		if truth {
			s.Truth, s.Prints = now.truth, now.prints
		}
		kind := storage.KindFull
		if t.Hour() != 2 {
			kind = storage.KindIncremental
		}
		at := t
		opts := recovery.BackupOptions{Conn: cn, Kind: kind, Prefix: s.Database, Recipients: keys, Signer: keys[0], Now: func() time.Time { return at }}
		b, err := recovery.CreateBackup(ctx, opts, primary, nil)
		if err != nil {
			return s, fmt.Errorf("backup at %s: %w", t.Format(time.RFC3339), err)
		}
		for _, c := range storage.Replicate(ctx, primary, b, []storage.Location{secondary}) {
			if c.Err != nil {
				return s, c.Err
			}
		}
		// The files' own times say when they were taken, as a real job's would.
		for _, root := range []string{primary.String(), secondary.String()} {
			os.Chtimes(filepath.Join(root, b.Name), t, t)
		}
		s.Backups = append(s.Backups, b.Name)
		if now.prints != nil {
			s.answers[b.Name] = now
		}
		if truth {
			s.Clean = b.Name
		}
		if infectedFrom >= 0 && i >= infectedFrom {
			s.Infected = append(s.Infected, b.Name)
		}
	}
	// Between the last backup and now, the day goes on: writes the RPO puts at risk.
	if err := s.sql(ctx, s.Database, fmt.Sprintf(dataStep, users, 10, 2, 100, r.Int64N(1<<30))); err != nil {
		return s, err
	}
	cfg := fmt.Sprintf("locations:\n  - name: primary\n    path: %s\n  - name: secondary\n    path: %s\nsigner_key: %s\nbackup_prefix: %s\n",
		primary.String(), secondary.String(), s.Public, s.Database) + o.ConfigExtra
	s.Config = filepath.Join(dir, "drconsole.yaml")
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		return s, err
	}
	if s.FaultAt.IsZero() {
		if err := s.beforeFault(ctx); err != nil {
			return s, err
		}
	}
	if err := s.inject(ctx, o.Scenario, r); err != nil {
		return s, err
	}
	if err := s.archiveWAL(ctx, keys); err != nil {
		return s, fmt.Errorf("WAL archive: %w", err)
	}
	say("the scenario's fault is injected (the facilitator sees what it was when the drill is over)")
	return s, nil
}

// beforeFault notes the moment just before the fault and what the data was then: what a
// recovery to a point in time before it brings back.
func (s *Sandbox) beforeFault(ctx context.Context) error {
	prints, err := s.Fingerprints(ctx)
	if err != nil {
		return err
	}
	now, err := s.query(ctx, s.Database, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
	if err != nil {
		return err
	}
	if s.FaultAt, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(now)); err != nil {
		return err
	}
	s.BeforeFault = prints
	// Commits a second apart from the fault, so that a target in between is plain to give.
	time.Sleep(1100 * time.Millisecond)
	return nil
}

// archiveWAL switches to a new segment, waits until the server has archived it to the
// stage, and pushes every staged file into both locations as wal-push does (compressed,
// encrypted to the drill key). Archiving then stops: a trainee's restores write WAL no
// recovery needs.
func (s *Sandbox) archiveWAL(ctx context.Context, keys openpgp.EntityList) error {
	seg, err := s.query(ctx, "postgres", "SELECT pg_walfile_name(pg_switch_wal())")
	if err != nil {
		return err
	}
	seg = strings.TrimSpace(seg)
	stage := filepath.Join(s.Dir, "wal-stage")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(stage, seg)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not archive %s within 30s (see %s)", seg, filepath.Join(s.Dir, "server.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	primary := filepath.Join(s.Dir, "backups", "primary")
	if _, err := os.Stat(primary); err != nil { // a regional outage moved it away
		primary += ".unreachable"
	}
	p := &wal.Pusher{Recipients: keys, Locations: []storage.Folder{
		storage.WALOf(storage.NewDir("primary", primary)),
		storage.WALOf(storage.NewDir("secondary", filepath.Join(s.Dir, "backups", "secondary")))}}
	files, err := filepath.Glob(filepath.Join(stage, "0*"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if _, err := p.Push(ctx, f); err != nil {
			return err
		}
	}
	for _, q := range []string{"ALTER SYSTEM SET archive_command = 'true'", "SELECT pg_reload_conf()"} {
		if err := s.sql(ctx, "postgres", q); err != nil {
			return err
		}
	}
	return os.RemoveAll(stage)
}

// inject does the scenario's damage, for real, in the sandbox, and says what it did from
// the rows before and after: deleting users deletes their guilds, API keys and sessions
// too (the schema's ON DELETE CASCADE), and the facilitator's answer must say so.
func (s *Sandbox) inject(ctx context.Context, scenario string, r *rand.Rand) error {
	switch scenario {
	case Corruption:
		cut := 5 + r.IntN(10)
		return s.deleteUsers(ctx, fmt.Sprintf(`DELETE FROM "User" WHERE id %% 100 < %d; UPDATE "Guild" SET name = 'x'`, cut),
			func(users, cascade string, after map[string]int64) string {
				return fmt.Sprintf(`%d%% of "User" rows deleted (%s)%s; every remaining "Guild" row's name overwritten (%d rows)`,
					cut, users, cascade, after["public.Guild"])
			})
	case Infrastructure:
		s.Fault = "the database server is gone: the cluster holds no " + s.Database + " database any more (a new, empty server to restore onto)"
		return s.sql(ctx, "postgres", "DROP DATABASE "+s.Database+" WITH (FORCE)")
	case Regional:
		// The primary region's bucket cannot be reached: its directory is gone from
		// where the configuration points.
		primary := filepath.Join(s.Dir, "backups", "primary")
		if err := os.Rename(primary, primary+".unreachable"); err != nil {
			return err
		}
		return s.deleteUsers(ctx, `DELETE FROM "User" WHERE id % 5 = 0`, func(users, cascade string, _ map[string]int64) string {
			return "the primary location is unreachable (its region is down); the secondary holds the same backups; the database lost 20% of its users (" + users + ")" + cascade
		})
	case Ransomware:
		s.Fault = `ransomware: every "User" bio overwritten with a ransom note; the last two backups were taken after the attack began and hold it too: only the one before is clean`
		return s.sql(ctx, s.Database, ransom)
	}
	return nil
}

// deleteUsers runs a fault that deletes users and sets Fault to what say makes of the
// users deleted ("260 of 2010") and the rows the deletes took with them by cascade.
func (s *Sandbox) deleteUsers(ctx context.Context, sql string, say func(users, cascade string, after map[string]int64) string) error {
	before, err := s.counts(ctx)
	if err != nil {
		return err
	}
	if err := s.sql(ctx, s.Database, sql); err != nil {
		return err
	}
	after, err := s.counts(ctx)
	if err != nil {
		return err
	}
	var took []string
	for _, t := range []struct{ table, rows string }{{"Guild", "guilds"}, {"ApiKey", "API keys"}, {"Session", "sessions"}} {
		if n := before["public."+t.table] - after["public."+t.table]; n > 0 {
			took = append(took, fmt.Sprintf("%d %s", n, t.rows))
		}
	}
	cascade := ""
	if len(took) > 0 {
		cascade = ", and by cascade their " + joinAnd(took)
	}
	users := fmt.Sprintf("%d of %d", before["public.User"]-after["public.User"], before["public.User"])
	s.Fault = say(users, cascade, after)
	return nil
}

// joinAnd joins words as a sentence does: "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// ransom is what the attack writes.
const ransom = `UPDATE "User" SET bio = 'YOUR DATA IS ENCRYPTED. PAY 10 BTC.' WHERE id % 3 <> 0`

// Tables are the application's tables, as rows and fingerprints name them.
var Tables = []string{"User", "Guild", "ApiKey", "Session", "Event"}

// Fingerprints reads each table's rows and an MD5 of them in key order, from the
// sandbox's database now; a table that is not there is "missing".
func (s *Sandbox) Fingerprints(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range Tables {
		exists, err := s.query(ctx, s.Database, `SELECT to_regclass('"`+t+`"') IS NOT NULL`)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				out["public."+t] = "missing"
				continue
			}
			return nil, err
		}
		if exists != "t" {
			out["public."+t] = "missing"
			continue
		}
		v, err := s.query(ctx, s.Database, `SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '-') FROM "`+t+`" t`)
		if err != nil {
			return nil, err
		}
		out["public."+t] = v
	}
	return out, nil
}

func (s *Sandbox) counts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range Tables {
		v, err := s.query(ctx, s.Database, `SELECT count(*) FROM "`+t+`"`)
		if err != nil {
			return nil, err
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		out["public."+t] = n
	}
	return out, nil
}

// Remove stops the cluster and deletes the sandbox.
func (s *Sandbox) Remove() error {
	if s == nil || s.Dir == "" {
		return nil
	}
	return RemoveDir(s.Dir)
}

func (s *Sandbox) startCluster(ctx context.Context) error {
	data := filepath.Join(s.Dir, "data")
	if err := wal.GiveToServer(s.Dir); err != nil {
		return err
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
		cmd.Dir = s.Dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
		if err := wal.RunAsServer(cmd); err != nil {
			return err
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("%w: the postgres account cannot reach %s (a directory above it is closed to it): give --dir a directory it can reach", recovery.ErrPreflight, s.Dir)
			}
			return fmt.Errorf("%s: %v: %s", name, err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	// Its WAL is archived: copied to a stage the build then pushes, as wal-push would,
	// into both locations, for recovery to a point in time.
	stage := filepath.Join(s.Dir, "wal-stage")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return err
	}
	if err := wal.GiveToServer(stage); err != nil {
		return err
	}
	conf := fmt.Sprintf("\n# drconsole drill sandbox: reachable through its socket only\nlisten_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\nsynchronous_commit = off\n"+
		"archive_mode = on\narchive_command = 'test ! -f %s/%%f && cp %%p %s/%%f'\n", s.Dir, s.Port, stage, stage)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return run("pg_ctl", "-D", data, "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", "60", "start")
}

// makeKey makes the drill's key: it encrypts and signs the backups, and decrypts them.
func (s *Sandbox) makeKey() error {
	e, err := openpgp.NewEntity("Drill", "drconsole training sandbox", "drill@sandbox.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		return err
	}
	s.Secret, s.Public = filepath.Join(s.Dir, "drill-secret.asc"), filepath.Join(s.Dir, "drill-public.asc")
	var sec, pub bytes.Buffer
	if err := e.SerializePrivate(&sec, nil); err != nil {
		return err
	}
	if err := e.Serialize(&pub); err != nil {
		return err
	}
	if err := os.WriteFile(s.Secret, sec.Bytes(), 0o600); err != nil {
		return err
	}
	return os.WriteFile(s.Public, pub.Bytes(), 0o644)
}

func (s *Sandbox) psql(ctx context.Context, db string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %v: %s", err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *Sandbox) sql(ctx context.Context, db, sql string) error {
	_, err := s.psql(ctx, db, "-c", sql)
	return err
}

func (s *Sandbox) query(ctx context.Context, db, sql string) (string, error) {
	return s.psql(ctx, db, "-A", "-t", "-c", sql)
}

// serverBinaries is the newest PostgreSQL server installed here.
func serverBinaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	if d := os.Getenv("DRCONSOLE_PG_BINDIR"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if st, err := os.Stat(filepath.Join(d, "initdb")); err == nil && st.Mode()&0o111 != 0 {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: a drill sandbox needs PostgreSQL's server binaries (initdb, pg_ctl) on this machine: install the postgresql package (apt-get install postgresql)", recovery.ErrPreflight)
}

func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// appSchema is shaped like the application's: quoted PascalCase tables, an enum, keys
// between them, and a large event table.
const appSchema = `
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'MODERATOR');
CREATE TABLE "User" (id serial PRIMARY KEY, "discordId" text UNIQUE NOT NULL, username text NOT NULL,
  role "Role" NOT NULL DEFAULT 'USER', bio text, "createdAt" timestamptz NOT NULL DEFAULT now());
CREATE TABLE "Guild" (id serial PRIMARY KEY, name text NOT NULL, "ownerId" int NOT NULL REFERENCES "User"(id) ON DELETE CASCADE, settings jsonb);
CREATE TABLE "ApiKey" (id serial PRIMARY KEY, "userId" int NOT NULL REFERENCES "User"(id) ON DELETE CASCADE, key bytea NOT NULL, scopes text[] NOT NULL DEFAULT '{}');
CREATE TABLE "Session" (id text PRIMARY KEY, "userId" int REFERENCES "User"(id) ON DELETE CASCADE, data text, "expiresAt" timestamptz);
CREATE TABLE "Event" (id bigserial PRIMARY KEY, "guildId" int, kind text NOT NULL, payload jsonb, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX "Event_guildId_at" ON "Event" ("guildId", at);
`

// dataStep adds a day's data: %[1]d users so far, %[2]d new users, %[3]d guilds, %[4]d
// events, %[5]d a seed for the values.
const dataStep = `
SELECT setseed((%[5]d %% 1000) / 1000.0);
INSERT INTO "User" ("discordId", username, role, bio)
  SELECT 'd' || g, 'user ' || g, CASE WHEN g %% 50 = 0 THEN 'ADMIN'::"Role" ELSE 'USER' END, md5(random()::text)
  FROM generate_series(%[1]d + 1, %[1]d + %[2]d) g;
INSERT INTO "Guild" (name, "ownerId", settings)
  SELECT 'guild ' || g, (SELECT min(id) FROM "User") + g %% greatest(%[1]d + %[2]d, 1), jsonb_build_object('n', g)
  FROM generate_series(1, %[3]d) g;
INSERT INTO "ApiKey" ("userId", key, scopes)
  SELECT id, decode(md5(id::text || random()::text), 'hex'), ARRAY['read'] FROM "User" WHERE id > %[1]d AND id %% 4 = 0;
INSERT INTO "Session" (id, "userId", data, "expiresAt")
  SELECT 's' || id || '-' || md5(random()::text), id, 'session', now() + interval '1 day' FROM "User" WHERE id > %[1]d AND id %% 10 = 0;
INSERT INTO "Event" ("guildId", kind, payload)
  SELECT 1 + g %% 100, (ARRAY['message', 'join', 'leave', 'ban'])[1 + g %% 4], jsonb_build_object('n', g, 'r', random())
  FROM generate_series(1, %[4]d) g;
`

// Keep marks the sandbox as kept on purpose: RemoveOrphans leaves it.
func (s *Sandbox) Keep() error {
	return os.WriteFile(filepath.Join(s.Dir, wal.KeptFile), nil, 0o644)
}

// RemoveOrphans removes the sandboxes under parent whose drill is dead and that were not
// kept on purpose (a drill killed with -9, a crash), and returns their directories.
func RemoveOrphans(parent string) ([]string, error) {
	return wal.RemoveOrphans(parent, "drconsole-drill-*", "data")
}

// RemoveDir stops the cluster of a sandbox kept in dir and deletes it.
func RemoveDir(dir string) error {
	if err := wal.StopCluster(filepath.Join(dir, "data")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
