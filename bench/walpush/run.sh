#!/usr/bin/env bash
# wal-push benchmark: `drconsole wal-push` of one 16 MiB WAL segment into the S3 test server
# against `zstd | gpg --encrypt | curl`, side by side. See README.md in this directory.
# As root it takes a real segment from a throwaway PostgreSQL 15 cluster (run as the
# postgres OS user); SEGMENT=FILE uses that file instead and needs neither root nor PostgreSQL.
# Extra arguments go to the driver, e.g. -max-ratio 1.0 (exit 3 above it), -rounds 15.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REPS=${REPS:-9}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${BENCH_PORT:-54333}
SEGMENT=${SEGMENT:-}

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

for t in go gpg zstd curl; do command -v $t >/dev/null || die "$t not found"; done
if [[ ! -x /usr/bin/time ]]; then
	say "installing /usr/bin/time (GNU time: each command's peak RSS)"
	apt-get install -y -qq time >/dev/null || die "/usr/bin/time missing and apt-get install time failed"
fi
# Other work on the machine shares its cores; a higher priority for the benchmark (its
# children inherit it) keeps that out of the figures as far as it can.
renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null 2>&1 || true

if [[ -z $SEGMENT ]]; then
	[[ $(id -u) == 0 ]] || die "run as root (the cluster runs as the postgres OS user), or give SEGMENT=FILE"
	[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL in $PGBIN; give SEGMENT=FILE"
	source "$HERE/../cluster.sh"
	start_bench_cluster drw
	# Production's WAL has full-page images: the first change to a page after each checkpoint
	# writes the whole page. cluster.sh turns them off for restores; turn them back on here.
	psql -d postgres -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
	say "making WAL: pgbench -i -s 10, a checkpoint, then pgbench's TPC-B-like updates"
	"$PGBIN/pgbench" -q -i -s 10 postgres >/dev/null 2>&1 || die "pgbench -i failed"
	psql -d postgres -c CHECKPOINT
	first=$(psql -At -d postgres -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	start=$(psql -At -d postgres -c "SELECT pg_current_wal_insert_lsn()")
	# Until three segments past the checkpoint are full, so the one taken is whole and from
	# the updates alone.
	while (($(psql -At -d postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$start') > 3 * 16 * 1024 * 1024" | grep -c t) == 0)); do
		"$PGBIN/pgbench" -n -c 2 -j 2 -T 3 postgres >/dev/null 2>&1 || die "pgbench failed"
	done
	psql -d postgres -c "SELECT pg_switch_wal()" >/dev/null
	# The segment after the checkpoint's: full, and never recycled (no checkpoint since).
	name=$(printf '%s%08X' "${first:0:16}" $((16#${first:16:8} + 1)))
	[[ ${first:16:8} != FFFFFFFF ]] || die "unlucky segment number $first; run again"
	mkdir -p "$WORK/seg"
	cp "$PGDATA/pg_wal/$name" "$WORK/seg/$name"
	SEGMENT=$WORK/seg/$name
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
	if [[ -x $PGBIN/pg_waldump ]]; then
		say "$name: $("$PGBIN/pg_waldump" --stats=record "$SEGMENT" 2>/dev/null | awk '/^Total/ {print "real WAL: " $2 " records, " $3 " B of them in records, " $5 " B in full-page images"}')"
	fi
else
	[[ -f $SEGMENT ]] || die "no segment $SEGMENT"
	WORK=$(mktemp -d /tmp/drw.XXXXXX)
	GNUPGHOME=$WORK/g
	export GNUPGHOME
	trap 'set +e; gpgconf --kill gpg-agent >/dev/null 2>&1; rm -rf "$WORK"' EXIT
	trap 'exit 130' INT TERM
fi

say "making a throwaway OpenPGP key (ed25519 + cv25519, as the runbook's ops key)"
mkdir -p -m 700 "$GNUPGHOME"
gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-generate-key 'Bench <bench@example.com>' ed25519 sign never 2>/dev/null
FPR=$(gpg --batch --with-colons --list-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}')
gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-add-key "$FPR" cv25519 encr never 2>/dev/null
gpg --batch --armor --export "$FPR" >"$WORK/public.asc"
gpg --batch --pinentry-mode loopback --passphrase '' --armor --export-secret-keys "$FPR" >"$WORK/secret.asc" 2>/dev/null

say "building drconsole and the driver"
(cd "$REPO" && go build -o "$WORK/drconsole" . && go build -o "$WORK/walpush" ./bench/walpush)
cat "$SEGMENT" >/dev/null # into the page cache
"$WORK/walpush" -drconsole "$WORK/drconsole" -segment "$SEGMENT" -recipient "$WORK/public.asc" -fpr "$FPR" \
	-key "$WORK/secret.asc" -rounds "$REPS" "$@"
