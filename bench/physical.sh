#!/usr/bin/env bash
# Backups to a local directory against the shell pipes they replace, side by
# side in one run (issue 16, item 1; results in docs/BENCHMARKS.md):
#
#   bench/physical.sh [SCALE]     SCALE of ../shared/bench/dataset.sql, default 10
#
#   pipe-physical      pg_basebackup -Ft -X none -D - | zstd -3 > F && sync F
#   lifeboat-physical  lifeboat backup --method physical --to file://DIR
#   pipe-logical       pg_dump -Fc -Z0 | zstd -3 > F && sync F
#   lifeboat-logical   lifeboat backup -d DB --to file://DIR
#
# lifeboat also encrypts (AES-256-GCM), hashes and writes a manifest, and its
# file store fsyncs what it writes. Every method runs BENCH_ROUNDS times
# (default 3) round-robin; the table shows each median round by wall time.
#
# The cluster (PostgreSQL 15 from the machine) is kept in
# $BENCH_HOME/physical-sSCALE between runs. It runs with archive_mode=on and
# archive_command=true: both physical methods wait for the server to archive
# the backup's last WAL segment, and `true` makes that instant for both — the
# copy is measured, not an archive (the backups are not restorable alone).
#
# BENCH_NICE (default -10, as root) runs every measured command at that
# priority, so that other work on a shared machine disturbs them less; the
# same for every method.
set -euo pipefail
SCALE=${1:-10}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE]" >&2; exit 2; }
ROUNDS=${BENCH_ROUNDS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_HOME=${BENCH_HOME:-/var/tmp/lifeboat-bench}
CLUSTER=$BENCH_HOME/physical-s$SCALE
DATASET=${DATASET:-$REPO/../shared/bench/dataset.sql}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
NICE=${BENCH_NICE:--10}
log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

if [ -z "${LIFEBOAT_BIN:-}" ]; then
  log "building lifeboat (release)"
  (cd "$REPO" && cargo build --release --quiet --bin lifeboat)
  LIFEBOAT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat
fi
for tool in zstd /usr/bin/time bc; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd time bc >/dev/null; }
done

# PostgreSQL refuses to run as root: the cluster belongs to postgres.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$CLUSTER"
[ "$(id -u)" = 0 ] && chown postgres "$CLUSTER"
PORT=$(free_port)
SOCK=$CLUSTER
OPTS="-p $PORT -k $SOCK -c listen_addresses='' -c wal_level=replica -c archive_mode=on -c archive_command=true -c max_wal_size=4GB -c fsync=off"
if [ ! -f "$CLUSTER/loaded" ]; then
  log "loading dataset.sql at scale $SCALE into $CLUSTER (once)"
  rm -rf "$CLUSTER/data"
  as_pg "$PG_BIN/initdb" -D "$CLUSTER/data" -A trust -U postgres >/dev/null
fi
as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER/data" -o "$OPTS" -l "$CLUSTER/log" -w start >/dev/null
WORK=$(mktemp -d /var/tmp/lifeboat-physical-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres LIFEBOAT_PG_BIN=$PG_BIN
if [ ! -f "$CLUSTER/loaded" ]; then
  "$PG_BIN/createdb" bench
  "$PG_BIN/psql" -q -d bench -v scale="$SCALE" -f "$DATASET" >/dev/null
  touch "$CLUSTER/loaded"
fi
CLUSTER_BYTES=$(du -sb "$CLUSTER/data" | cut -f1)
"$LIFEBOAT_BIN" keygen --id bench --out "$WORK/lifeboat.key" >/dev/null
RD=$WORK/results
mkdir -p "$RD"

# timed NAME ROUND CMD...: wall, user, sys (the command and its children), peak RSS.
timed() {
  local name=$1 round=$2; shift 2
  sync
  nice -n "$NICE" /usr/bin/time -f '%e %U %S %M' -o "$RD/$name.$round" "$@"
}
LB=("$LIFEBOAT_BIN" --log warn backup --host "$SOCK" --port "$PORT" --user postgres
  --key-file "$WORK/lifeboat.key")

pipe_physical() {
  timed pipe-physical "$1" sh -c "'$PG_BIN/pg_basebackup' -Ft -X none --checkpoint=fast -D - | zstd -3 -q > '$WORK/base.tar.zst' && sync '$WORK/base.tar.zst'"
  stat -c %s "$WORK/base.tar.zst" >"$RD/pipe-physical.bytes"
  rm -f "$WORK/base.tar.zst"
}
lifeboat_physical() {
  rm -rf "$WORK/lbp" && mkdir "$WORK/lbp"
  timed lifeboat-physical "$1" "${LB[@]}" --method physical --to "file://$WORK/lbp"
  du -sb "$WORK/lbp" | cut -f1 >"$RD/lifeboat-physical.bytes"
}
pipe_logical() {
  timed pipe-logical "$1" sh -c "'$PG_BIN/pg_dump' -Fc -Z0 -d bench | zstd -3 -q > '$WORK/dump.zst' && sync '$WORK/dump.zst'"
  stat -c %s "$WORK/dump.zst" >"$RD/pipe-logical.bytes"
  rm -f "$WORK/dump.zst"
}
lifeboat_logical() {
  rm -rf "$WORK/lbl" && mkdir "$WORK/lbl"
  timed lifeboat-logical "$1" "${LB[@]}" -d bench --no-globals --to "file://$WORK/lbl"
  du -sb "$WORK/lbl" | cut -f1 >"$RD/lifeboat-logical.bytes"
}

log "warm-up: one pg_basebackup and one pg_dump to /dev/null (not measured)"
"$PG_BIN/pg_basebackup" -Ft -X none --checkpoint=fast -D - >/dev/null
"$PG_BIN/pg_dump" -Fc -Z0 -d bench >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  log "round $r of $ROUNDS"
  pipe_physical "$r"; lifeboat_physical "$r"; pipe_logical "$r"; lifeboat_logical "$r"
done

# median NAME: the median round's "wall user sys rss" by wall time, and every wall.
median() {
  local name=$1
  cat "$RD/$name".[0-9]* | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)'
}
walls() { cat "$RD/$1".[0-9]* | awk '{printf "%s ", $1}'; }
{
  echo "Cluster: $(numfmt --to=iec "$CLUSTER_BYTES") on disk (dataset.sql scale $SCALE); $ROUNDS rounds at nice $NICE; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| method | median wall s | rounds (wall s) | CPU s user+sys | peak RSS MiB | stored MB |"
  echo "|---|---|---|---|---|---|"
  for m in pipe-physical lifeboat-physical pipe-logical lifeboat-logical; do
    read -r w u s k < <(median "$m")
    printf '| %s | %s | %s| %.2f | %.1f | %.1f |\n' "$m" "$w" "$(walls "$m")" \
      "$(echo "$u + $s" | bc)" "$(echo "$k / 1024" | bc -l)" "$(echo "$(cat "$RD/$m.bytes") / 1000000" | bc -l)"
  done
  echo
  for kind in physical logical; do
    a=$(median "pipe-$kind" | cut -d' ' -f1); b=$(median "lifeboat-$kind" | cut -d' ' -f1)
    printf '%s: lifeboat / pipe = %.3f×\n' "$kind" "$(echo "$b / $a" | bc -l)"
  done
} | tee "$BENCH_HOME/physical-results-s$SCALE.md"
