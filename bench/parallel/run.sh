#!/usr/bin/env bash
# Parallel engine benchmark: drconsole's parallel engine (N = 1, 2, 4) and its pg_restore
# engine against raw pg_restore on the same box and the same dumps. See README.md in this
# directory. Run as root (the cluster runs as the postgres OS user).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DATA=${BENCH_DATA:-/tmp/drconsole-bench-parallel}
ROWS=${ROWS:-5000000}
TABLES=${TABLES:-100}
TABLE_ROWS=${TABLE_ROWS:-20000}
REPS=${REPS:-3}
JOBS=${JOBS:-1,2,4}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${BENCH_PORT:-54331}
NAME=spywatcher_full_20240125_120000.dump

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root (the cluster runs as the postgres OS user via runuser)"
[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL in $PGBIN"
for t in gpg gzip gunzip go; do command -v $t >/dev/null || die "$t not found"; done
# Other work on the machine shares its cores; a higher priority for the benchmark and its
# server (children inherit it) keeps that out of the figures as far as it can.
renice -n "${BENCH_NICE:--19}" -p $$ >/dev/null

source "$HERE/../cluster.sh"
start_bench_cluster drp
# The server's own defaults for index builds (maintenance_work_mem 64MB): the engine sets
# its sessions' figures itself; raw pg_restore gets the server's.

# --- datasets ----------------------------------------------------------------------------
# app: shaped like the application's database (quoted PascalCase tables, an enum, foreign
# keys) plus its event log, one big table of about 100 bytes a row in COPY text with a
# primary key and one index: the table that loads on one core under pg_restore.
make_app() { # DB
	psql -d postgres -c "CREATE DATABASE $1"
	psql -d "$1" <<SQL
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'MODERATOR');
CREATE TABLE "User" (id serial PRIMARY KEY, "discordId" text UNIQUE NOT NULL, username text NOT NULL,
  role "Role" NOT NULL DEFAULT 'USER', "createdAt" timestamptz NOT NULL DEFAULT '2024-01-01');
INSERT INTO "User" ("discordId", username, role) SELECT 'd' || g, 'user ' || g,
  CASE WHEN g % 50 = 0 THEN 'ADMIN'::"Role" ELSE 'USER' END FROM generate_series(1, 20000) g;
CREATE TABLE "Guild" (id serial PRIMARY KEY, name text NOT NULL, "ownerId" int NOT NULL REFERENCES "User"(id), settings jsonb);
INSERT INTO "Guild" (name, "ownerId", settings) SELECT 'guild ' || g, 1 + g % 20000, jsonb_build_object('n', g) FROM generate_series(1, 2000) g;
CREATE TABLE "ApiKey" (id serial PRIMARY KEY, "userId" int NOT NULL REFERENCES "User"(id) ON DELETE CASCADE, key bytea NOT NULL);
INSERT INTO "ApiKey" ("userId", key) SELECT 1 + g % 20000, decode(md5(g::text), 'hex') FROM generate_series(1, 800) g;
CREATE TABLE "Session" (id text PRIMARY KEY, "userId" int REFERENCES "User"(id), data text);
INSERT INTO "Session" SELECT 's' || g, 1 + g % 20000, 'session data ' || g FROM generate_series(1, 5000) g;
CREATE TABLE "Event" (id bigint PRIMARY KEY, "guildId" int NOT NULL, "userId" int NOT NULL, kind text NOT NULL,
  "createdAt" timestamptz NOT NULL, detail text);
INSERT INTO "Event" SELECT i, 1 + (hashint4(i) & 2047), 1 + (hashint4(i * 7) & 16383),
  (ARRAY['message_create','message_delete','member_join','member_leave','voice_join','reaction_add'])[1 + (hashint4(i * 11) & 3)],
  '2024-01-01'::timestamptz + i * interval '3 seconds', substr(md5(i::text), 1, 12) || ' in channel ' || (hashint4(i * 13) & 1023)
  FROM generate_series(1, $ROWS) i;
CREATE INDEX "Event_guildId_createdAt_idx" ON "Event" ("guildId", "createdAt");
SQL
}

# many: TABLES tables of TABLE_ROWS rows, each with a primary key and one index.
make_many() { # DB
	psql -d postgres -c "CREATE DATABASE $1"
	psql -d "$1" <<SQL
DO \$\$BEGIN FOR t IN 1..$TABLES LOOP
  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a text, b int, c timestamptz)', t);
  EXECUTE format('INSERT INTO t%s SELECT g, md5((g + %s)::text), hashint4(g) & 4095, %L::timestamptz + g * interval ''1 minute'' FROM generate_series(1, $TABLE_ROWS) g', t, t, '2024-01-01');
  EXECUTE format('CREATE INDEX ON t%s (b)', t);
END LOOP; END\$\$;
SQL
}

ensure_key() {
	[[ -s $BENCH_DATA/secret.asc && -s $BENCH_DATA/fpr ]] && return
	say "making a throwaway OpenPGP key"
	mkdir -p -m 700 "$GNUPGHOME"
	gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-generate-key 'Bench <bench@example.com>' ed25519 sign never 2>/dev/null
	local fpr
	fpr=$(gpg --batch --with-colons --list-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}')
	gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
	gpg --batch --pinentry-mode loopback --passphrase '' --export-secret-keys --armor "$fpr" >"$BENCH_DATA/secret.asc" 2>/dev/null
	echo "$fpr" >"$BENCH_DATA/fpr"
}

import_key() {
	mkdir -p -m 700 "$GNUPGHOME"
	gpg -q --batch --import "$BENCH_DATA/secret.asc" 2>/dev/null
}

ensure_dataset() { # SUBDIR MAKER SIZE
	local dir=$BENCH_DATA/$1
	if [[ -f $dir/done && $(cat "$dir/done") == "$3" ]]; then
		say "dataset $dir ($3) is cached"
		return
	fi
	say "building dataset $dir ($3)"
	rm -rf "$dir" && mkdir -p "$dir"
	"$2" "src_$1"
	# As the backup job makes it: pg_dump -Fc -b (zlib inside each data block), gzip, gpg.
	"$PGBIN/pg_dump" -Fc -b -d "src_$1" -f "$dir/$NAME"
	psql -d postgres -c "DROP DATABASE src_$1"
	gzip -c "$dir/$NAME" >"$dir/$NAME.gz"
	gpg -q --batch --trust-model always --encrypt --recipient "$(cat "$BENCH_DATA/fpr")" -o "$dir/$NAME.gz.gpg" "$dir/$NAME.gz"
	rm "$dir/$NAME.gz"
	echo "$3" >"$dir/done"
}

mkdir -p "$BENCH_DATA"
ensure_key
import_key
ensure_dataset app make_app "$ROWS rows"
ensure_dataset many make_many "$TABLES x $TABLE_ROWS rows"
size_mb() { echo "$(($(stat -c %s "$1") / 1000000))"; }

say "building the benchmark driver"
(cd "$REPO" && go build -o "$WORK/parallel" ./bench/parallel)
echo "Datasets: app $ROWS rows in its big table, dump $(size_mb "$BENCH_DATA/app/$NAME") MB (-Fc), .gz.gpg $(size_mb "$BENCH_DATA/app/$NAME.gz.gpg") MB;" \
	"many $TABLES tables x $TABLE_ROWS rows, dump $(size_mb "$BENCH_DATA/many/$NAME") MB."
"$WORK/parallel" -app "$BENCH_DATA/app" -many "$BENCH_DATA/many" -key "$BENCH_DATA/secret.asc" \
	-db "postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable" -bin "$PGBIN" -reps "$REPS" -jobs "$JOBS"
