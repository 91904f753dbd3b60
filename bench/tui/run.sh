#!/usr/bin/env bash
# Console benchmark: a restore's throughput with the console attached vs without, and
# keypress-to-frame latency while it streams. Starts a throwaway PostgreSQL 15 cluster,
# builds the dataset (the same one, in the same place, as bench/restore/run.sh, so the
# two share it) and runs main.go against them. See README.md. Run as root.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DATA=${BENCH_DATA:-/tmp/drconsole-bench}
ROWS=${ROWS:-5000000}
REPS=${REPS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${BENCH_PORT:-54331}
NAME=spywatcher_full_20240125_120000.dump

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root (the cluster runs as the postgres OS user via runuser)"
[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL in $PGBIN"
for t in gpg gzip go; do command -v $t >/dev/null || die "$t not found"; done
# Other work on the machine shares its cores; a higher priority for the benchmark and
# its server (children inherit it) keeps that out of the figures as far as it can.
renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null

source "$(dirname "$0")/../cluster.sh"
start_bench_cluster drt

# --- dataset: as bench/restore/run.sh builds it (only the full size) ---------------------
if [[ ! -f $BENCH_DATA/full/done || $(cat "$BENCH_DATA/full/done") != "$ROWS" ]]; then
	mkdir -p "$BENCH_DATA"
	if [[ ! -s $BENCH_DATA/secret.asc || ! -s $BENCH_DATA/fpr ]]; then
		say "making a throwaway OpenPGP key"
		mkdir -p -m 700 "$GNUPGHOME"
		gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-generate-key 'Bench <bench@example.com>' ed25519 sign never 2>/dev/null
		fpr=$(gpg --batch --with-colons --list-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}')
		gpg -q --batch --pinentry-mode loopback --passphrase '' --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
		gpg --batch --pinentry-mode loopback --passphrase '' --export-secret-keys --armor "$fpr" >"$BENCH_DATA/secret.asc" 2>/dev/null
		echo "$fpr" >"$BENCH_DATA/fpr"
	fi
	mkdir -p -m 700 "$GNUPGHOME"
	gpg -q --batch --import "$BENCH_DATA/secret.asc" 2>/dev/null
	dir=$BENCH_DATA/full
	say "building dataset $dir ($ROWS rows)"
	rm -rf "$dir" && mkdir -p "$dir"
	psql -d postgres -c "CREATE DATABASE src_full"
	psql -d src_full -c "CREATE TABLE orders AS SELECT i::bigint AS id,
		'user_' || (hashint4(i) & 65535) AS account,
		(ARRAY['created','paid','shipped','refunded'])[1 + (hashint4(i*7) & 3)] AS status,
		'2024-01-01'::timestamptz + i * interval '3 seconds' AS created_at,
		(ARRAY['Amsterdam','Berlin','Copenhagen','Dublin','Edinburgh','Frankfurt','Geneva','Helsinki'])[1 + (hashint4(i*11) & 7)] AS city,
		substr(md5(i::text), 1, 12) || ' order ' || (hashint4(i*13) & 1023) || ' via web checkout' AS note
		FROM generate_series(1, $ROWS) i"
	"$PGBIN/pg_dump" -Fc -Z0 -d src_full -f "$dir/$NAME"
	psql -d postgres -c "DROP DATABASE src_full"
	gzip -c "$dir/$NAME" >"$dir/$NAME.gz"
	gpg -q --batch --trust-model always --encrypt --recipient "$(cat "$BENCH_DATA/fpr")" -o "$dir/$NAME.gz.gpg" "$dir/$NAME.gz"
	rm "$dir/$NAME.gz"
	echo "$ROWS" >"$dir/done"
else
	say "dataset $BENCH_DATA/full ($ROWS rows) is cached"
fi
cat "$BENCH_DATA/full/$NAME.gz.gpg" >/dev/null # warm the page cache

# --- run -------------------------------------------------------------------------------
say "building the benchmark"
(cd "$REPO" && go build -o "$WORK/tui" ./bench/tui)
"$WORK/tui" -db-url "postgres://postgres@127.0.0.1:$PORT/bench_tui?sslmode=disable" -key "$BENCH_DATA/secret.asc" \
	-rounds "$REPS" ${CPUPROFILE:+-cpuprofile "$CPUPROFILE"} ${ONLY:+-only "$ONLY"} "$BENCH_DATA/full/$NAME.gz.gpg"
