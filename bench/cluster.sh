# Sourced by the benchmark scripts: a throwaway PostgreSQL cluster with the settings every
# variant shares, and a work directory with short paths (the server's and gpg-agent's
# sockets live there). Needs PGBIN, PORT and say(); sets WORK, GNUPGHOME, PGDATA, PG*,
# psql(), and removes everything on exit.
start_bench_cluster() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	GNUPGHOME=$WORK/g
	export GNUPGHOME
	PGDATA=$WORK/data
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM

	# fsync is off: the benchmarks are about feeding pg_restore, not about the disk.
	chown postgres: "$WORK"
	say "starting PostgreSQL in $PGDATA (port $PORT)"
	runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
	cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
CONF
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w start >/dev/null ||
		{ cat "$WORK/server.log" >&2; die "server did not start"; }
	export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
}

bench_cleanup() {
	set +e
	if [[ -f $PGDATA/postmaster.pid ]]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
	fi
	[[ -d $GNUPGHOME ]] && gpgconf --kill gpg-agent >/dev/null 2>&1
	rm -rf "$WORK"
}

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
