#!/usr/bin/env bash
# Restore benchmark (issue 4, "Benchmark"; results in docs/BENCHMARKS.md):
# `lifeboat restore` of a pgbench database from the local S3 server (moto)
# side by side with a bare `pg_restore` of a local dump of the same database,
# in one run, round-robin.
#
#   bench/restore.sh [SCALE]        pgbench scale, default 50 (~750 MB database)
#
# Methods, each into a fresh empty database that is checked and dropped:
#   bare       pg_restore -d T dump.Fc          (a local pg_dump -Fc file, zlib)
#   bare-1tx   pg_restore --single-transaction  (as lifeboat runs it)
#   bare-Z0    pg_restore --single-transaction of a pg_dump -Fc -Z0 file: the
#              same uncompressed archive lifeboat streams into pg_restore
#   lifeboat   lifeboat restore --from s3://…   (download, authenticate,
#              decrypt, decompress, stream into pg_restore --single-transaction)
#   bare-jN    createdb T && pg_restore --jobs N of the local dump.Fc (the
#              createdb inside the timer, as lifeboat-jN creates its database)
#   lifeboat-jN  lifeboat restore --create --jobs N: copied into a local
#              spool as it authenticates (still compressed: each loader
#              decompresses its own frames, docs/FORMAT.md §3.2), N
#              pg_restore processes load rows from it as it grows, then
#              pg_restore --jobs N builds the post-data section (issue 16)
#   lifeboat-jN-file  the same from a copy of the backup in a local directory
#              (file:// destination): like for like with bare-jN's local
#              dump, without the S3 server's share of the 2 cores
#
# BENCH_METHODS (default: all of the above) picks methods. BENCH_JOBS
# (default 2) is N. BENCH_PARTITIONS=P (default 0) splits
# pgbench_accounts into P partitions (`pgbench -i --partitions=P`): P tables
# of equal size instead of one, where loading rows in parallel can gain.
# Environment: BENCH_HOME (default /var/tmp/lifeboat-bench; the loaded
# cluster is kept in $BENCH_HOME/pgbench-sSCALE and reused), BENCH_ROUNDS
# (default 3), LIFEBOAT_BIN (default: the release build in CARGO_TARGET_DIR).
set -euo pipefail

SCALE=${1:-50}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE]" >&2; exit 2; }
ROUNDS=${BENCH_ROUNDS:-3}
JOBS=${BENCH_JOBS:-2}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_HOME=${BENCH_HOME:-/var/tmp/lifeboat-bench}
CLUSTER=$BENCH_HOME/pgbench-s$SCALE
PARTITIONS=${BENCH_PARTITIONS:-0}
[[ $PARTITIONS =~ ^[0-9]+$ ]] || { echo "BENCH_PARTITIONS must be a number" >&2; exit 2; }
DB=pgbench_s$SCALE
[ "$PARTITIONS" -gt 0 ] && DB=${DB}_p$PARTITIONS

# shellcheck source=../scripts/testbed.sh
source "$REPO/scripts/testbed.sh"
log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

if [ -z "${LIFEBOAT_BIN:-}" ]; then
  log "building lifeboat (release)"
  (cd "$REPO" && cargo build --release --quiet --bin lifeboat)
  LIFEBOAT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat
fi
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

WORK=$(mktemp -d /var/tmp/lifeboat-restore-bench.XXXXXX)
chmod 700 "$WORK"
TESTBED_DIR=$WORK   # moto's log
cleanup() {
  local rc=$?
  stop_s3
  [ -n "${PGDATA_DIR:-}" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# A cluster of its own that outlives the run (the loaded scale is reused);
# max_wal_size is kept small so a restore's WAL does not fill the disk.
ensure_postgres
mkdir -p "$CLUSTER"
chown postgres "$CLUSTER"
chmod 755 "$BENCH_HOME" "$CLUSTER"
if [ ! -f "$CLUSTER/data/PG_VERSION" ]; then
  runuser -u postgres -- "$PG_BIN/initdb" -D "$CLUSTER/data" -U postgres -A trust --no-sync >/dev/null
fi
PGPORT=$(free_port)
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER/data" -l "$CLUSTER/server.log" -w -o \
  "-p $PGPORT -k $CLUSTER -c listen_addresses=127.0.0.1 -c wal_level=replica -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=512MB" \
  start >/dev/null
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATA_DIR="$CLUSTER/data" LIFEBOAT_PG_BIN="$PG_BIN"
export PATH="$PG_BIN:$PATH"
start_s3

if ! psql -X -d postgres -tAc "select 1 from pg_database where datname = '$DB'" | grep -q 1; then
  log "loading pgbench at scale $SCALE, $PARTITIONS partitions"
  dropdb --if-exists "$DB.loading"
  createdb "$DB.loading"
  pgbench -i -q -s "$SCALE" --partitions="$PARTITIONS" "$DB.loading" >/dev/null 2>&1
  psql -X -q -d postgres -c "alter database \"$DB.loading\" rename to $DB"
fi
ROWS=$((SCALE * 100000))
SIZE=$(psql -X -d postgres -tAc "select pg_size_pretty(pg_database_size('$DB'))")
log "database $DB: $SIZE, $ROWS accounts"

# The two things restored: a local dump, and a lifeboat backup in S3.
pg_dump -Fc -d "$DB" -f "$WORK/dump.Fc"
pg_dump -Fc -Z0 -d "$DB" -f "$WORK/dump-Z0.Fc"
DUMP_SIZE=$(du -h "$WORK/dump.Fc" | cut -f1)
curl -s -X PUT "$S3_ENDPOINT/bench-restore" >/dev/null   # moto: create the bucket
URL="s3://bench-restore/pgbench?region=us-east-1&endpoint=$S3_ENDPOINT"
"$LIFEBOAT_BIN" keygen --id bench --out "$WORK/keys" 2>/dev/null
export LIFEBOAT_KEY_FILE=$WORK/keys LIFEBOAT_LOG=warn
FILE_URL=file://$WORK/repo
BACKUP=$("$LIFEBOAT_BIN" backup -d "$DB" --no-globals --to "$URL" --to "$FILE_URL" --json)
STORED=$(printf '%s' "$BACKUP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_out"])')
log "lifeboat backup in S3: $STORED bytes; local dump: $DUMP_SIZE"

run() { # method target -> "wall user sys maxrss_kb"
  local method=$1 t=$2
  case $method in
    bare) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" pg_restore -d "$t" "$WORK/dump.Fc" ;;
    bare-1tx) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" pg_restore --single-transaction -d "$t" "$WORK/dump.Fc" ;;
    bare-Z0) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" pg_restore --single-transaction -d "$t" "$WORK/dump-Z0.Fc" ;;
    lifeboat) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$LIFEBOAT_BIN" restore --from "$URL" --target-db "$t" >/dev/null ;;
    bare-jN) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" bash -c 'createdb "$1" && exec pg_restore --jobs "$2" -d "$1" "$3"' _ "$t" "$JOBS" "$WORK/dump.Fc" ;;
    lifeboat-jN) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$LIFEBOAT_BIN" restore --from "$URL" --target-db "$t" --create --jobs "$JOBS" --spool-dir "$WORK" >/dev/null ;;
    lifeboat-jN-file) /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$LIFEBOAT_BIN" restore --from "$FILE_URL" --target-db "$t" --create --jobs "$JOBS" --spool-dir "$WORK" >/dev/null ;;
  esac
  cat "$WORK/time"
}

read -r -a METHODS <<<"${BENCH_METHODS:-bare bare-1tx bare-Z0 lifeboat bare-jN lifeboat-jN lifeboat-jN-file}"
: >"$WORK/raw"
for round in $(seq 1 "$ROUNDS"); do
  for m in "${METHODS[@]}"; do
    t=restore_${round}_$m
    t=${t//-/_}
    dropdb --if-exists "$t" 2>/dev/null
    # lifeboat-jN creates its database (a parallel load is not one
    # transaction, so a failure must be able to drop it); bare-jN does it
    # inside its timer, to compare like with like.
    case $m in lifeboat-jN* | bare-jN) ;; *) createdb "$t" ;; esac
    psql -X -q -d postgres -c checkpoint
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r wall user sys rss < <(run "$m" "$t")
    got=$(psql -X -d "$t" -tAc "select count(*) from pgbench_accounts")
    [ "$got" = "$ROWS" ] || { log "$m restored $got rows, expected $ROWS"; exit 1; }
    dropdb "$t"
    log "round $round $m: ${wall}s (load $load)"
    echo "$round $m $wall $user $sys $rss $load" >>"$WORK/raw"
  done
done

python3 - "$WORK/raw" "$SCALE" "$SIZE" "$DUMP_SIZE" "$STORED" "$PARTITIONS" <<'EOF'
import statistics, sys
raw, scale, size, dump_size, stored, partitions = sys.argv[1:]
rows = [l.split() for l in open(raw)]
by = {}
for r, m, wall, user, sys_, rss, load in rows:
    by.setdefault(m, []).append((float(wall), float(user) + float(sys_), int(rss), float(load)))
print(f"pgbench scale {scale}, {partitions} partitions: database {size}, local dump (pg_dump -Fc) {dump_size}, lifeboat backup in S3 {int(stored)/2**20:.1f} MiB")
print()
print("| method | rounds (wall s) | min | median | client CPU s (median round) | peak RSS | load |")
print("|---|---|---|---|---|---|---|")
med = {}
for m in [m for m in ["bare", "bare-1tx", "bare-Z0", "lifeboat", "bare-jN", "lifeboat-jN", "lifeboat-jN-file"] if m in by]:
    v = by[m]
    walls = [w for w, *_ in v]
    med[m] = statistics.median(walls)
    mid = sorted(v)[len(v) // 2]
    loads = [l for *_, l in v]
    print(f"| {m} | {' '.join(f'{w:.1f}' for w in walls)} | {min(walls):.1f} | {med[m]:.1f} | {mid[1]:.1f} | {mid[2] // 1024} MiB | {min(loads):.1f}–{max(loads):.1f} |")
print()
for base in [b for b in ["bare", "bare-1tx", "bare-Z0"] if b in med and "lifeboat" in med]:
    print(f"lifeboat / {base}: median {med['lifeboat'] / med[base]:.2f}×, min {min(w for w, *_ in by['lifeboat']) / min(w for w, *_ in by[base]):.2f}× (target ≤ 1.2×)")
for m in [m for m in ["lifeboat-jN", "lifeboat-jN-file"] if m in med]:
    for base in [b for b in ["bare-jN", "bare"] if b in med]:
        print(f"{m} / {base}: median {med[m] / med[base]:.2f}× (target: ≤ 1.0× bare-jN, < 1.0× bare)")
EOF
