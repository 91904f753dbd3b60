#!/usr/bin/env bash
# Restore benchmark: raw pg_restore vs `gpg -d | gunzip | pg_restore` vs `drconsole restore`,
# and the decode stage alone, side by side on one throwaway PostgreSQL 15 cluster.
# See README.md in this directory. Run as root (the cluster runs as the postgres OS user).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DATA=${BENCH_DATA:-/tmp/drconsole-bench}
ROWS=${ROWS:-5000000}
REPS=${REPS:-5}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${BENCH_PORT:-54329}
NAME=spywatcher_full_20240125_120000.dump

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root (the cluster runs as the postgres OS user via runuser)"
[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL in $PGBIN"
if [[ ! -x /usr/bin/time ]]; then
	say "installing /usr/bin/time"
	apt-get install -y -qq time >/dev/null || die "/usr/bin/time missing and apt-get install time failed"
fi
# Other work on the machine shares its cores; a higher priority for the benchmark and
# its server (children inherit it) keeps that out of the figures as far as it can.
renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null
for t in gpg gzip gunzip go bc; do command -v $t >/dev/null || die "$t not found"; done

source "$(dirname "$0")/../cluster.sh"
start_bench_cluster drb

# --- dataset ---------------------------------------------------------------------------
# One table, about 98 bytes a row in COPY text: a hex fragment and a few numbers carry
# the entropy, names and fixed words compress well; gzip gets about 4:1, as real data does.
make_table() { # DB ROWS
	psql -d postgres -c "CREATE DATABASE $1"
	psql -d "$1" -c "CREATE TABLE orders AS SELECT i::bigint AS id,
		'user_' || (hashint4(i) & 65535) AS account,
		(ARRAY['created','paid','shipped','refunded'])[1 + (hashint4(i*7) & 3)] AS status,
		'2024-01-01'::timestamptz + i * interval '3 seconds' AS created_at,
		(ARRAY['Amsterdam','Berlin','Copenhagen','Dublin','Edinburgh','Frankfurt','Geneva','Helsinki'])[1 + (hashint4(i*11) & 7)] AS city,
		substr(md5(i::text), 1, 12) || ' order ' || (hashint4(i*13) & 1023) || ' via web checkout' AS note
		FROM generate_series(1, $2) i"
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

ensure_dataset() { # SUBDIR ROWS
	local dir=$BENCH_DATA/$1 rows=$2
	if [[ -f $dir/done && $(cat "$dir/done") == "$rows" ]]; then
		say "dataset $dir ($rows rows) is cached"
		return
	fi
	say "building dataset $dir ($rows rows)"
	rm -rf "$dir" && mkdir -p "$dir"
	make_table "src_$1" "$rows"
	"$PGBIN/pg_dump" -Fc -Z0 -d "src_$1" -f "$dir/$NAME"
	psql -d postgres -c "DROP DATABASE src_$1"
	gzip -c "$dir/$NAME" >"$dir/$NAME.gz"
	gpg -q --batch --trust-model always --encrypt --recipient "$(cat "$BENCH_DATA/fpr")" -o "$dir/$NAME.gz.gpg" "$dir/$NAME.gz"
	rm "$dir/$NAME.gz"
	echo "$rows" >"$dir/done"
}

mkdir -p "$BENCH_DATA"
ensure_key
import_key
ensure_dataset full "$ROWS"
ensure_dataset half "$((ROWS / 2))"
size_mb() { echo "$(($(stat -c %s "$1") / 1000000))"; }
DUMP_MB=$(size_mb "$BENCH_DATA/full/$NAME")
(( DUMP_MB >= 475 )) || echo "WARNING: the full dump is $DUMP_MB MB; figures from a dump under 400 MB do not count" >&2

# --- tools under test ------------------------------------------------------------------
say "building drconsole and the decode program"
(cd "$REPO" && go build -o "$WORK/drconsole" . && go build -o "$WORK/decode" ./bench/restore/decode)
HAVE_CLI=1
if ! "$WORK/drconsole" restore -h >/dev/null 2>&1; then
	HAVE_CLI=0
	echo "WARNING: this drconsole has no restore subcommand; skipping its variants" >&2
fi

# --- measuring -------------------------------------------------------------------------
RESULTS=$WORK/results # lines: variant size seconds maxrss_kb cpu_seconds
DB=bench_restore

fresh_db() { # leave no database named $DB, with the last run's writes flushed
	psql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CHECKPOINT" 2>/dev/null
	sync
}

# measure VARIANT SIZE CMD...: wall clock, peak RSS (of the command or its largest
# descendant: getrusage reports the biggest, not the sum) and CPU seconds of the client
# side (not the server's) from /usr/bin/time.
measure() {
	local variant=$1 size=$2
	shift 2
	if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$@" >"$WORK/out" 2>&1; then
		cat "$WORK/out" >&2
		die "$variant ($size) failed"
	fi
	read -r secs kb usr sys <"$WORK/time"
	local cpu
	cpu=$(echo "$usr + $sys" | bc -l)
	printf '%-10s %-4s %7.2f s  %7.1f MiB  %6.2f s cpu  (load %s)\n' "$variant" "$size" "$secs" "$(echo "$kb / 1024" | bc -l)" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" >&2
	echo "$variant $size $secs $kb $cpu" >>"$RESULTS"
}

check_rows() { # SIZE
	local want=$ROWS got
	[[ $1 == half ]] && want=$((ROWS / 2))
	got=$(psql -At -d "$DB" -c "SELECT count(*) FROM orders")
	[[ $got == "$want" ]] || die "restored $got rows, want $want"
}

DBURL="postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"
# Every variant creates its database inside the timing, as drconsole does (CREATE
# DATABASE takes about 0.2 s here).
run_raw() {
	fresh_db
	measure raw "$1" bash -c '"$1/createdb" "$2" && "$1/pg_restore" -d "$2" "$3"' _ "$PGBIN" "$DB" "$BENCH_DATA/$1/$NAME"
	check_rows "$1"
}
run_pipe() {
	fresh_db
	measure pipeline "$1" bash -o pipefail -c '"$1/createdb" "$2" &&
		gpg -q --batch -d "$3" 2>/dev/null | gunzip | "$1/pg_restore" -d "$2"' _ "$PGBIN" "$DB" "$BENCH_DATA/$1/$NAME.gz.gpg"
	check_rows "$1"
}
run_cli() {
	fresh_db # drconsole test-restores only into a database that does not exist yet
	measure drconsole "$1" "$WORK/drconsole" restore --yes --state-dir "$WORK/state" --gpg-key "$BENCH_DATA/secret.asc" \
		--db-url "$DBURL" --target-db "$DB" "$BENCH_DATA/$1/$NAME.gz.gpg"
	check_rows "$1"
}

for f in full/$NAME full/$NAME.gz.gpg half/$NAME.gz.gpg; do cat "$BENCH_DATA/$f" >/dev/null; done # warm the page cache
: >"$RESULTS"
for rep in $(seq "$REPS"); do
	say "round $rep of $REPS"
	run_raw full
	run_pipe full
	if ((HAVE_CLI)); then run_cli full; run_cli half; fi
	measure decode full "$WORK/decode" "$BENCH_DATA/secret.asc" "$BENCH_DATA/full/$NAME.gz.gpg"
	measure gpg-gunzip full bash -o pipefail -c 'gpg -q --batch -d "$1" 2>/dev/null | gunzip >/dev/null' _ "$BENCH_DATA/full/$NAME.gz.gpg"
done
fresh_db

# --- report ----------------------------------------------------------------------------
# Best (least disturbed by anything else on the machine) and median over the rounds.
stat_of() { # best|median VARIANT SIZE FIELD(3=secs,4=kb,5=cpu)
	awk -v v="$2" -v s="$3" -v f="$4" '$1 == v && $2 == s {print $f}' "$RESULTS" | sort -g |
		awk -v how="$1" '{a[NR] = $1} END {
			if (NR == 0) print "nan"
			else if (how == "best") print a[1]
			else if (NR % 2) print a[(NR + 1) / 2]
			else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
echo
echo "Dataset: $ROWS rows; dump $(size_mb "$BENCH_DATA/full/$NAME") MB (-Fc -Z0), .gz.gpg $(size_mb "$BENCH_DATA/full/$NAME.gz.gpg") MB;" \
	"half: $(size_mb "$BENCH_DATA/half/$NAME") MB / $(size_mb "$BENCH_DATA/half/$NAME.gz.gpg") MB. $REPS rounds; $(nproc) cores."
printf '%-12s %-5s %9s %9s %13s %12s\n' variant size "best s" "median s" "peak RSS MiB" "client cpu s"
for vs in "raw full" "pipeline full" "drconsole full" "drconsole half" "decode full" "gpg-gunzip full"; do
	set -- $vs
	s=$(stat_of best "$1" "$2" 3)
	[[ $s == nan ]] && continue
	printf '%-12s %-5s %9.2f %9.2f %13s %12.2f\n' "$1" "$2" "$s" "$(stat_of median "$1" "$2" 3)" \
		"$(mib "$(stat_of median "$1" "$2" 4)")" "$(stat_of median "$1" "$2" 5)"
done
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
verdict() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == "<=") ? x <= t : x >= t; print ok ? "ok" : "MISSED"}'; }
row() { # NAME BEST MEDIAN OP TARGET
	printf '%-40s %8s %8s   target %s %-5s %s\n' "$1" "$2" "$3" "$4" "$5" "$(verdict "$2" "$4" "$5")"
}
both() { # NUMERATOR DENOMINATOR (variant:size)
	echo "$(ratio "$(stat_of best ${1/:/ } 3)" "$(stat_of best ${2/:/ } 3)") $(ratio "$(stat_of median ${1/:/ } 3)" "$(stat_of median ${2/:/ } 3)")"
}
printf '%-40s %8s %8s\n' ratio best median
row "decode speedup vs gpg -d | gunzip (x)" $(both gpg-gunzip:full decode:full) ">=" 1.25
if ((HAVE_CLI)); then
	row "drconsole / raw pg_restore" $(both drconsole:full raw:full) "<=" 1.05
	row "drconsole / gpg | gunzip | pg_restore" $(both drconsole:full pipeline:full) "<=" 1.0
	full_kb=$(stat_of median drconsole full 4) half_kb=$(stat_of median drconsole half 4)
	max_kb=$(awk '$1 == "drconsole" && $2 == "full" && $4 > m {m = $4} END {print m}' "$RESULTS")
	row "drconsole peak RSS, full (MiB; max, median)" "$(mib "$max_kb")" "$(mib "$full_kb")" "<=" 48
	d=$(awk -v f="$full_kb" -v h="$half_kb" 'BEGIN {d = (f - h) / h * 100; if (d < 0) d = -d; printf "%.1f", d}')
	row "drconsole RSS full vs half (% apart)" "$d" "$d" "<=" 10
fi
echo "for reference: pipeline / raw $(both pipeline:full raw:full | tr ' ' /) (best/median);" \
	"decode $(awk -v b="$(stat -c %s "$BENCH_DATA/full/$NAME")" -v s="$(stat_of best decode full 3)" 'BEGIN {printf "%.0f", b / s / 1e6}') MB/s of dump"
