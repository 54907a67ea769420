#!/usr/bin/env bash
# WAL archiving under a write load (issue 5, "Benchmark"): wal-push as
# archive_command and wal-stream over the replication protocol, side by side
# on the same WAL in one run (docs/BENCHMARKS.md holds the recorded results).
#
#   bench/wal.sh [SECONDS] [SCALE]     pgbench run length (default 45) and scale (default 10)
#
# Starts the test bed (a throwaway PostgreSQL 15 and moto S3), one bucket per
# method, then: pgbench -i at SCALE, both archivers on, pgbench -c 4 -j 2 for
# SECONDS. Every second it samples the server's current segment, the newest
# segment each method has archived (pg_stat_archiver for wal-push, the
# --status-file for wal-stream) and wal-stream's lagSeconds. After the load:
# pg_switch_wal, and the time until each method has the last segment (drain).
# Prints a Markdown table.
#
# Environment: LIFEBOAT_BIN (default: ${CARGO_TARGET_DIR:-target}/release/lifeboat,
# built when missing), WAL_DELAY (wal-stream --max-wal-delay, default 5s).
set -euo pipefail
SECONDS_RUN=${1:-45}
SCALE=${2:-10}
DELAY=${WAL_DELAY:-5s}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/testbed.sh
source "$REPO/scripts/testbed.sh"
log() { printf '\033[1m[bench-wal]\033[0m %s\n' "$*" >&2; }

if [ -z "${LIFEBOAT_BIN:-}" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin lifeboat)
  LIFEBOAT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat
fi
command -v pgbench >/dev/null || PATH="$PG_BIN:$PATH"

testbed_up
W=$TESTBED_DIR/wal
mkdir -p "$W/spool"
chmod 755 "$W"
STREAM_PID=
cleanup_wal() { if [ -n "$STREAM_PID" ]; then kill "$STREAM_PID" 2>/dev/null || true; fi; wait 2>/dev/null || true; testbed_down; }
trap cleanup_wal EXIT

python3 - <<EOF
import boto3
s3 = boto3.client("s3", endpoint_url="$S3_ENDPOINT", region_name="us-east-1")
for b in ("wal-push", "wal-stream"):
    s3.create_bucket(Bucket=b)
EOF
PUSH_URL="s3://wal-push/bench?region=us-east-1&endpoint=$S3_ENDPOINT"
STREAM_URL="s3://wal-stream/bench?region=us-east-1&endpoint=$S3_ENDPOINT"
"$LIFEBOAT_BIN" keygen --id bench --out "$W/key" >/dev/null 2>&1
chown postgres "$W/key"   # archive_command runs as the postgres user

log "scale $SCALE: pgbench -i"
pgbench -i -q -s "$SCALE" postgres >/dev/null 2>&1

log "archive_command = lifeboat wal-push; restarting the server with full_page_writes on"
psql -X -q -d postgres <<EOF
alter system set archive_mode = on;
alter system set archive_command = '$LIFEBOAT_BIN wal-push %p --to "$PUSH_URL" --key-file $W/key --log warn';
EOF
# The test bed turns full_page_writes off (fast tests); a real server has it
# on, and it is most of the WAL volume after each checkpoint.
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w -m fast stop >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$TESTBED_DIR/pg/server.log" -w -o \
  "-p $PGPORT -k $TESTBED_DIR/pg -c listen_addresses=127.0.0.1 -c wal_level=replica -c fsync=off -c synchronous_commit=off -c full_page_writes=on -c checkpoint_timeout=30s -c max_wal_size=4GB" \
  start >/dev/null
psql -X -q -d postgres -c "select pg_switch_wal()" >/dev/null

log "wal-stream --max-wal-delay $DELAY"
LIFEBOAT_LOG=info "$LIFEBOAT_BIN" wal-stream --pg-bin "$PG_BIN" --spool "$W/spool" \
  --to "$STREAM_URL" --key-file "$W/key" --max-wal-delay "$DELAY" \
  --status-file "$W/status.json" 2>"$W/wal-stream.log" &
STREAM_PID=$!
for _ in $(seq 1 100); do
  [ "$(psql -X -tAq -d postgres -c "select count(*) from pg_replication_slots where active")" = 1 ] && break
  sleep 0.2
done

segno() { # segment file name -> its number (the low 16 hex digits)
  [ -n "$1" ] && [ "$1" != null ] && echo $((16#${1:8:8} * 256 + 16#${1:16:8})) || echo 0
}
max() { [ "$1" -gt "$2" ] && echo "$1" || echo "$2"; }
BASE=0
sample() { # t current push stream stream_lag_s
  local cur push stream lag
  cur=$(psql -X -tAq -d postgres -c "select pg_walfile_name(pg_current_wal_lsn())")
  push=$(psql -X -tAq -d postgres -c "select coalesce(last_archived_wal, '') from pg_stat_archiver")
  stream=$(jq -r '.lastSegment // ""' "$W/status.json" 2>/dev/null || true)
  lag=$(jq -r '.lagSeconds // 0' "$W/status.json" 2>/dev/null || echo 0)
  # Nothing archived yet counts as the segment before the run.
  echo "$1 $(segno "$cur") $(max "$(segno "$push")" "$BASE") $(max "$(segno "$stream")" "$BASE") $lag"
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
START_SEG=$(segno "$(psql -X -tAq -d postgres -c "select pg_walfile_name(pg_current_wal_lsn())")")
BASE=$((START_SEG - 1))
log "pgbench -c 4 -j 2 -T $SECONDS_RUN"
T0=$(date +%s.%N)
pgbench -c 4 -j 2 -T "$SECONDS_RUN" -n postgres >"$W/pgbench.out" 2>&1 &
BENCH=$!
: >"$W/samples"
while kill -0 "$BENCH" 2>/dev/null; do
  sample "$(echo "$(date +%s.%N) - $T0" | bc)" >>"$W/samples"
  sleep 1
done
wait "$BENCH"
T_LOAD=$(echo "$(date +%s.%N) - $T0" | bc)
LAST=$(psql -X -tAq -d postgres -c "select pg_walfile_name(pg_current_wal_lsn())")
psql -X -q -d postgres -c "select pg_switch_wal()" >/dev/null
LAST_SEG=$(segno "$LAST")
T1=$(date +%s.%N)
PUSH_DRAIN= STREAM_DRAIN=
for _ in $(seq 1 1200); do
  s=$(sample 0)
  read -r _ _ p st _ <<<"$s"
  now=$(echo "$(date +%s.%N) - $T1" | bc)
  [ -z "$PUSH_DRAIN" ] && [ "$p" -ge "$LAST_SEG" ] && PUSH_DRAIN=$now
  [ -z "$STREAM_DRAIN" ] && [ "$st" -ge "$LAST_SEG" ] && STREAM_DRAIN=$now
  [ -n "$PUSH_DRAIN" ] && [ -n "$STREAM_DRAIN" ] && break
  sleep 0.2
done
SEGS=$((LAST_SEG - START_SEG + 1))
TPS=$(awk '/^tps/ {print $3; exit}' "$W/pgbench.out")

# Backlog: segments completed on the server but not yet archived.
awk -v segs="$SEGS" -v tload="$T_LOAD" -v pd="$PUSH_DRAIN" -v sd="$STREAM_DRAIN" '
  { bp = $2 - 1 - $3; bs = $2 - 1 - $4; if (bp > mp) mp = bp; if (bs > ms) ms = bs;
    sp += bp; ss += bs; n++; if ($5 > ml) ml = $5; sl += $5 }
  END {
    printf "| method | segments | archive throughput (segments/s, load + drain) | backlog during load: mean / max (segments) | drain after the load (s) | wal-stream lagSeconds mean / max |\n"
    printf "|---|---:|---:|---:|---:|---:|\n"
    printf "| wal-push (archive_command) | %d | %.2f | %.1f / %d | %.1f | — |\n", segs, segs / (tload + pd), sp / n, mp, pd
    printf "| wal-stream | %d | %.2f | %.1f / %d | %.1f | %.1f / %.1f |\n", segs, segs / (tload + sd), ss / n, ms, sd, sl / n, ml
  }' "$W/samples"
echo
echo "pgbench: scale $SCALE, -c 4 -j 2, ${SECONDS_RUN} s, $TPS tps; WAL produced: $SEGS segments of 16 MiB in $(printf %.1f "$T_LOAD") s ($(echo "scale=2; $SEGS / $T_LOAD" | bc) segments/s)"
echo "machine: $(nproc) cores, load average before the load: $LOADAVG"
grep -c "segment archived" "$W/wal-stream.log" | sed 's/^/wal-stream log lines "segment archived": /'
