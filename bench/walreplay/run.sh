#!/usr/bin/env bash
# WAL replay benchmark: a real PostgreSQL 15 recovery replaying ~64 archived segments through
# `drconsole wal-fetch` from the S3 test server behind added latency, on demand and with
# prefetch, against `cp` from a local directory. See README.md in this directory.
# Extra arguments go to the driver, e.g. -rounds 5, -latency 20ms, -min-speedup 2 -max-vs-cp 1.3.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${BENCH_PORT:-54334}
SEGMENTS=${SEGMENTS:-64}

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root (the clusters run as the postgres OS user)"
[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL in $PGBIN"
command -v go >/dev/null || die "go not found"
renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null 2>&1 || true

source "$HERE/../cluster.sh"
start_bench_cluster drr
# The base backup and its WAL are made once and kept in $BENCH_DATA for later runs.
DATA=${BENCH_DATA:-/tmp/drconsole-bench-walreplay}
if [[ ! -f $DATA/done ]]; then
	rm -rf "$DATA" && mkdir -p "$DATA/archive" && chown -R postgres: "$DATA"
	# Production's settings for what recovery reads: full-page images on, every segment archived.
	psql -d postgres -c "ALTER SYSTEM SET full_page_writes = on" -c "ALTER SYSTEM SET archive_mode = on" \
		-c "ALTER SYSTEM SET archive_command = 'cp %p $DATA/archive/%f'" >/dev/null
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w restart >/dev/null || die "restart failed"

	say "base backup (pg_basebackup -X none: every segment comes from the archive)"
	runuser -u postgres -- "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$DATA/base" -X none -c fast
	start=$(psql -At -d postgres -c "SELECT pg_current_wal_insert_lsn()")

	# A checkpoint before each round of updates, as production takes them every few minutes:
	# the first change to each page after one writes the whole page into the WAL.
	say "making $SEGMENTS segments of WAL: pgbench -i -s 10, then its TPC-B-like updates between checkpoints"
	"$PGBIN/pgbench" -q -i -s 10 postgres >/dev/null 2>&1 || die "pgbench -i failed"
	while (($(psql -At -d postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$start') > $SEGMENTS * 16 * 1024 * 1024" | grep -c t) == 0)); do
		psql -d postgres -c CHECKPOINT
		"$PGBIN/pgbench" -n -c 2 -j 2 -T 3 postgres >/dev/null 2>&1 || die "pgbench failed"
	done
	last=$(psql -At -d postgres -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	psql -d postgres -c "SELECT pg_switch_wal()" >/dev/null
	for _ in $(seq 600); do
		[[ -f $DATA/archive/$last ]] && break
		sleep 0.1
	done
	[[ -f $DATA/archive/$last ]] || die "$last was never archived"
	touch "$DATA/done"
fi
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
say "archive: $(ls "$DATA/archive" | wc -l) files, $(du -sh "$DATA/archive" | cut -f1)"

say "building drconsole and the driver"
(cd "$REPO" && go build -o "$WORK/drconsole" . && go build -o "$WORK/walreplay" ./bench/walreplay)
chown -R postgres: "$WORK"
"$WORK/walreplay" -work "$WORK" -data "$DATA" -pgbin "$PGBIN" -port "$((PORT + 1))" "$@"
