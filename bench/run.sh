#!/usr/bin/env bash
# Side-by-side benchmark of lifeboat against the pipelines it replaces
# (issue 2, "Benchmark"; docs/BENCHMARKS.md holds the recorded results).
#
#   bench/run.sh [SCALE]               SCALE of ../shared/bench/dataset.sql, default 10
#   bench/run.sh --load-only [SCALE]   only load (or find) the dataset
#
# One run, one machine: starts the test bed (PostgreSQL 15 + moto S3 with a
# bucket in us-east-1 and one in eu-west-1), loads the dataset at SCALE (kept
# in $BENCH_HOME/sSCALE between runs and reused), then measures wall time,
# CPU time (user+sys of the command and every child it waited for) and peak
# RSS with /usr/bin/time for each backup and restore method, BENCH_ROUNDS
# times round-robin, and prints Markdown tables (median round by wall time,
# with the range) — also written to $BENCH_HOME/results-sSCALE.md.
#
# Environment:
#   BENCH_HOME     persistent directory for the PostgreSQL clusters holding
#                  the loaded datasets, one per scale (default /var/tmp/lifeboat-bench)
#   BENCH_ROUNDS   rounds of every method (default 3)
#   BENCH_PGBACKREST=0  skip pgBackRest (physical; S3 over stunnel TLS; one round)
#   DATASET        dataset script (default ../shared/bench/dataset.sql)
#   LIFEBOAT_BIN   lifeboat binary (default: cargo build --release, then
#                  ${CARGO_TARGET_DIR:-target}/release/lifeboat)
#
# CPU time counts the client processes only: the PostgreSQL backend that
# serves pg_dump (or executes pg_restore's statements) is not a child and is
# the same for every method.
#
# Secrets (lifeboat's master key, the openssl passphrase, the restic
# password, pgBackRest's cipher pass) live in 0600 files under a private temp
# dir; none is on a command line. The original design ran
# `openssl enc -pass pass:KEY`; method (d) reproduces its pipeline with
# `-pass file:` instead (same cipher, same cost, key not in argv).
set -euo pipefail

LOAD_ONLY=0
if [ "${1:-}" = --load-only ]; then LOAD_ONLY=1; shift; fi
SCALE=${1:-10}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [--load-only] [SCALE]" >&2; exit 2; }
ROUNDS=${BENCH_ROUNDS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_HOME=${BENCH_HOME:-/var/tmp/lifeboat-bench}
DATASET=${DATASET:-$REPO/../shared/bench/dataset.sql}
DB=bench_s$SCALE
CLUSTER=$BENCH_HOME/s$SCALE   # one cluster per scale: pgBackRest copies a whole cluster

# shellcheck source=../scripts/testbed.sh
source "$REPO/scripts/testbed.sh"

log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

# ---------------------------------------------------------------- set-up ---

ensure_tools() {
  local missing=()
  [ -x /usr/bin/time ] || missing+=(time)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v restic >/dev/null || missing+=(restic)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v jq >/dev/null || missing+=(jq)
  if [ "${BENCH_PGBACKREST:-1}" = 1 ]; then
    command -v pgbackrest >/dev/null || missing+=(pgbackrest)
    command -v stunnel4 >/dev/null || missing+=(stunnel4)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v aws >/dev/null || { log "installing the aws CLI"; python3 -m pip install --quiet awscli; }
  if [ -z "${LIFEBOAT_BIN:-}" ]; then
    log "building lifeboat (release)"
    (cd "$REPO" && cargo build --release --quiet)
    LIFEBOAT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat
  fi
  [ -x "$LIFEBOAT_BIN" ] || { log "no lifeboat binary at $LIFEBOAT_BIN"; exit 1; }
}

# The benchmark cluster outlives the run so that a loaded dataset is reused:
# the test bed's start_postgres creates it in $CLUSTER/pg the first time; later
# runs restart it here with the same settings on a fresh port.
bench_pg_up() {
  if [ -f "$CLUSTER/pg/data/PG_VERSION" ]; then
    PGPORT=$(free_port)
    log "restarting the benchmark cluster in $CLUSTER/pg on port $PGPORT"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER/pg/data" -l "$CLUSTER/pg/server.log" -w -o \
      "-p $PGPORT -k $CLUSTER/pg -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB" \
      start >/dev/null
    export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATA_DIR="$CLUSTER/pg/data" LIFEBOAT_PG_BIN="$PG_BIN"
    export PATH="$PG_BIN:$PATH"
  else
    mkdir -p "$CLUSTER"
    chmod 755 "$BENCH_HOME"
    TESTBED_DIR=$CLUSTER start_postgres
  fi
}

bench_pg_down() {
  [ -n "${PGDATA_DIR:-}" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
}

cleanup() {
  local rc=$?
  stop_pgbackrest_tls
  stop_s3
  bench_pg_down
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  exit $rc
}

load_dataset() {
  if psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    log "dataset at scale $SCALE already loaded ($DB)"
    return
  fi
  log "loading the dataset at scale $SCALE (about a minute per 10 here)"
  local t=$DB.loading
  dropdb --if-exists "$t"
  createdb "$t"
  psql -q -d "$t" -v scale="$SCALE" -f "$DATASET" >/dev/null
  # Renamed only when complete: a half-loaded dataset is never reused.
  psql -q -d postgres -c "ALTER DATABASE \"$t\" RENAME TO $DB"
}

make_bucket() { # name region
  if [ "$2" = us-east-1 ]; then
    aws --endpoint-url "$S3_ENDPOINT" --region "$2" s3api create-bucket --bucket "$1" >/dev/null
  else
    aws --endpoint-url "$S3_ENDPOINT" --region "$2" s3api create-bucket --bucket "$1" \
      --create-bucket-configuration LocationConstraint="$2" >/dev/null
  fi
}

make_buckets() {
  make_bucket lb-use1 us-east-1
  make_bucket lb-euw1 eu-west-1
  make_bucket orig-use1 us-east-1
  make_bucket orig-euw1 eu-west-1
  make_bucket restic us-east-1
  make_bucket pgbackrest us-east-1
}

make_secrets() {
  "$LIFEBOAT_BIN" keygen --id bench --out "$WORK/lifeboat.key" >/dev/null
  (umask 077 && openssl rand -hex 32 >"$WORK/openssl.pass" && openssl rand -hex 32 >"$WORK/restic.pass")
  export RESTIC_PASSWORD_FILE=$WORK/restic.pass RESTIC_CACHE_DIR=$WORK/restic-cache
}

# ------------------------------------------------------------ measuring ---

# timed NAME CMD...: runs CMD under /usr/bin/time; leaves "wall user sys
# maxrss_kib" in $RD/NAME.time ($RD: this round's directory) and the 1-minute
# load average just before in $RD/NAME.load (other work on the machine shows
# in wall time, not in CPU time). GNU time's %M is the largest RSS of the
# command and of any descendant it waited for (a maximum, not a sum).
timed() {
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg >"$RD/$name.load"
  /usr/bin/time -f '%e %U %S %M' -o "$RD/$name.time" "$@"
}

# rss_of NAME CMD...: like `exec CMD` inside a pipeline, noting its own peak RSS.
rss_of() { echo "/usr/bin/time -f %M -o '$RD/$1.rss'"; }

s3_size() { # bucket prefix: total bytes stored under it
  aws --endpoint-url "$S3_ENDPOINT" s3 ls "s3://$1/$2" --recursive --summarize | awk '/Total Size/ {print $3}'
}

note() { printf '%s' "$2" >"$RD/$1"; } # note FILE VALUE: a fact for the report

# ------------------------------------------------------ backup methods ---

# Leaves a local -Fc -Z0 dump for the restore side and warms the page cache.
prepare_dump() {
  log "warm-up: pg_dump -Fc -Z0 to $WORK/plain.dump (not measured)"
  pg_dump -Fc -Z0 -d "$DB" -f "$WORK/plain.dump"
  DUMP_BYTES=$(stat -c %s "$WORK/plain.dump")
  ZSTD_BYTES=$(zstd -3 -c -q "$WORK/plain.dump" | wc -c)
}

backup_a_pgdump() {
  timed a bash -c "pg_dump -Fc -Z0 -d '$DB' > /dev/null"
}

backup_b_zstd() {
  timed b bash -c "$(rss_of b.pg_dump) pg_dump -Fc -Z0 -d '$DB' | $(rss_of b.zstd) zstd -3 -q > /dev/null"
}

# (b) to a file made durable, as every real destination must be: what
# lifeboat's file:// store does at the end (fsync of the object). Not a
# target, an explanation: the difference from (b) is the disk.
backup_b2_zstd_file() {
  timed b2 bash -c "pg_dump -Fc -Z0 -d '$DB' | zstd -3 -q > '$WORK/b2.zst' && sync '$WORK/b2.zst'"
  rm -f "$WORK/b2.zst"
}

# lifeboat_backup NAME URL...: one lifeboat backup to every URL given.
lifeboat_backup() {
  local name=$1; shift
  local args=() u
  for u in "$@"; do args+=(--to "$u"); done
  timed "$name" "$LIFEBOAT_BIN" --log warn backup -d "$DB" --no-globals --key-file "$WORK/lifeboat.key" \
    "${args[@]}" --json >"$RD/$name.json"
}

backup_c1_file() {
  LB_FILE_URL="file://$WORK/lb-file"
  mkdir -p "$WORK/lb-file"
  lifeboat_backup c1 "$LB_FILE_URL"
  note c1.stored "$(jq .bytes_out "$RD/c1.json")"
}

backup_c2_s3() {
  LB_S3_USE1="s3://lb-use1/s$SCALE?region=us-east-1&endpoint=$S3_ENDPOINT"
  LB_S3_EUW1="s3://lb-euw1/s$SCALE?region=eu-west-1&endpoint=$S3_ENDPOINT"
  lifeboat_backup c2 "$LB_S3_USE1" "$LB_S3_EUW1"
  note c2.stored "$(jq .bytes_out "$RD/c2.json")"
}

# The original design, one command per step as its scripts ran them, the
# upload to both regions like (c2). Total = the sum of the steps.
backup_d_original() {
  local d=$WORK/orig
  mkdir -p "$d"
  timed d1 pg_dump -Fc -d "$DB" -f "$d/db.dump"
  timed d2 gzip -9 "$d/db.dump"
  timed d3 openssl enc -aes-256-cbc -pbkdf2 -salt -pass "file:$WORK/openssl.pass" -in "$d/db.dump.gz" -out "$d/db.dump.gz.enc"
  timed d4 aws --endpoint-url "$S3_ENDPOINT" --region us-east-1 s3 cp --only-show-errors "$d/db.dump.gz.enc" "s3://orig-use1/s$SCALE/db.dump.gz.enc"
  timed d5 aws --endpoint-url "$S3_ENDPOINT" --region eu-west-1 s3 cp --only-show-errors "$d/db.dump.gz.enc" "s3://orig-euw1/s$SCALE/db.dump.gz.enc"
  cat "$RD"/d[1-5].time | awk '{w += $1; u += $2; s += $3; if ($4 > m) m = $4} END {printf "%.2f %.2f %.2f %d\n", w, u, s, m}' >"$RD/d.time"
  cp "$RD/d1.load" "$RD/d.load"
  note d.stored "$(stat -c %s "$d/db.dump.gz.enc")"
  note d.steps "dump $(wall d1) s, gzip -9 $(wall d2) s, openssl $(wall d3) s, upload $(wall d4) + $(wall d5) s"
  rm -rf "$d"
}

# Repository format 2 (compression on, restic's default "auto" level), a
# fresh repository per round so that no round deduplicates against another;
# init is not measured.
backup_e_restic() {
  RESTIC_REPO="s3:$S3_ENDPOINT/restic/s$SCALE-r$ROUND"
  restic -r "$RESTIC_REPO" init --repository-version 2 -q >/dev/null
  timed e bash -c "$(rss_of e.pg_dump) pg_dump -Fc -Z0 -d '$DB' \
    | $(rss_of e.restic) restic -r '$RESTIC_REPO' backup -q --stdin --stdin-filename db.dump --host bench"
  note e.stored "$(s3_size restic "s$SCALE-r$ROUND/")"
}

# ----------------------------------------------------- restore methods ---

# check_restored DB: the restored database has the source's row counts.
COUNTS_SQL="SELECT (SELECT count(*) FROM customers) || ',' || (SELECT count(*) FROM orders) || ',' || (SELECT count(*) FROM documents) || ',' || (SELECT count(*) FROM events)"
check_restored() {
  local got
  got=$(psql -d "$1" -tAc "$COUNTS_SQL")
  [ "$got" = "$SOURCE_COUNTS" ] || { log "restore into $1 is wrong: $got, expected $SOURCE_COUNTS"; exit 1; }
  dropdb "$1"
}

# Bare pg_restore as an operator would type it.
restore_bare() {
  dropdb --if-exists r_bare
  timed rb bash -c "createdb r_bare && pg_restore -d r_bare '$WORK/plain.dump'"
  check_restored r_bare
}

# The same with the flags lifeboat gives pg_restore (one transaction, stop
# on the first error): the like-for-like floor for lifeboat's restore.
restore_bare_1tx() {
  dropdb --if-exists r_bare1
  timed rb1 bash -c "createdb r_bare1 && pg_restore --single-transaction --exit-on-error -d r_bare1 '$WORK/plain.dump'"
  check_restored r_bare1
}

# restore_lifeboat NAME URL
restore_lifeboat() {
  local name=$1 url=$2
  dropdb --if-exists "r_$name"
  timed "$name" "$LIFEBOAT_BIN" --log warn restore --from "$url" --key-file "$WORK/lifeboat.key" \
    --target-db "r_$name" --create --json >"$RD/$name.json"
  check_restored "r_$name"
}

# Not a restore: the S3 server's own download speed, the floor for any
# restore from it (the aws CLI fetching lifeboat's object to /dev/null).
restore_floor_s3_get() {
  local key
  key=$(aws --endpoint-url "$S3_ENDPOINT" s3 ls --recursive "s3://lb-use1/s$SCALE/" | sort -k3 -n | tail -1 | awk '{print $4}')
  timed rg aws --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "s3://lb-use1/$key" - >/dev/null
}

restore_restic() {
  dropdb --if-exists r_restic
  timed rr bash -c "createdb r_restic && $(rss_of rr.restic) restic -r '$RESTIC_REPO' dump -q latest /db.dump \
    | $(rss_of rr.pg_restore) pg_restore -d r_restic"
  check_restored r_restic
}

# ---------------------------------------------------------- pgBackRest ---
# A physical full backup of the whole cluster (this scale's database plus the
# empty postgres/template databases, and every index), so it is not like for
# like with the logical dumps; its S3 client needs TLS, so stunnel terminates
# TLS in front of moto. Without WAL archiving (archive-check=n) the backup is
# not restorable on its own: it measures the copy, nothing more.
STUNNEL_PID=
stop_pgbackrest_tls() { [ -n "$STUNNEL_PID" ] && kill "$STUNNEL_PID" 2>/dev/null || true; }

start_pgbackrest_tls() {
  local d=$1 port
  port=$(free_port)
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$d/tls.key" -out "$d/tls.crt" 2>/dev/null
  cat "$d/tls.crt" "$d/tls.key" >"$d/tls.pem"
  cat >"$d/stunnel.conf" <<CONF
foreground = yes
pid =
[s3]
accept = 127.0.0.1:$port
connect = ${S3_ENDPOINT#http://}
cert = $d/tls.pem
CONF
  stunnel4 "$d/stunnel.conf" >"$d/stunnel.log" 2>&1 &
  STUNNEL_PID=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  TLS_PORT=$port
}

backup_f_pgbackrest() {
  local d=$WORK/pgbackrest
  mkdir -p "$d/log" "$d/lock" "$d/spool"
  start_pgbackrest_tls "$d"
  # pgBackRest reads its secrets from its config file (0600, owned by postgres).
  (umask 077 && cat >"$d/pgbackrest.conf" <<CONF
[global]
repo1-type=s3
repo1-s3-bucket=pgbackrest
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$TLS_PORT
repo1-storage-verify-tls=n
repo1-s3-region=us-east-1
repo1-s3-key=$AWS_ACCESS_KEY_ID
repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY
repo1-s3-uri-style=path
repo1-path=/s$SCALE
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(openssl rand -hex 32)
compress-type=zst
compress-level=3
process-max=1
start-fast=y
archive-check=n
log-path=$d/log
lock-path=$d/lock
spool-path=$d/spool
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$PGDATA_DIR
pg1-port=$PGPORT
pg1-socket-path=$CLUSTER/pg
pg1-user=postgres
CONF
  )
  chown -R postgres "$d"
  local pgbr=(runuser -u postgres -- pgbackrest --config="$d/pgbackrest.conf" --stanza=bench)
  "${pgbr[@]}" stanza-create >"$d/stanza.log" 2>&1 || { note f.failed "stanza-create: $(tail -1 "$d/stanza.log")"; return 0; }
  timed f "${pgbr[@]}" --type=full backup >"$d/backup.log" 2>&1 || { note f.failed "backup: $(tail -1 "$d/backup.log")"; return 0; }
  note f.stored "$(s3_size pgbackrest "s$SCALE/")"
  note f.cluster "$(psql -d postgres -tAc "SELECT sum(pg_database_size(oid)) FROM pg_database")"
}

# ---------------------------------------------------------------- report ---

# Field of NAME's .time in round R: wall, cpu (user+sys), rss (KiB).
tfield() { # R NAME FIELD
  awk -v f="$3" '{ if (f == "wall") print $1; else if (f == "cpu") printf "%.2f\n", $2 + $3; else print $4 }' \
    "$WORK/round-$1/$2.time"
}
wall() { tfield "$ROUND" "$1" wall; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }

# median_round NAME: the round whose wall time is the median for NAME.
median_round() {
  local r
  for r in $(seq 1 "$ROUNDS"); do
    if [ -f "$WORK/round-$r/$1.time" ]; then echo "$(tfield "$r" "$1" wall) $r"; fi
  done | sort -n | awk '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}'
}

wall_range() {
  local r
  for r in $(seq 1 "$ROUNDS"); do
    if [ -f "$WORK/round-$r/$1.time" ]; then tfield "$r" "$1" wall; fi
  done | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR > 1) printf "%s–%s", lo, hi; else printf "%s", lo}'
}

# row NAME "method" "peak RSS detail" "stored" "notes": one table line from
# the median round of NAME.
row() {
  local name=$1 label=$2 rss_detail=$3 stored=$4 notes=$5
  local r; r=$(median_round "$name")
  [ -n "$r" ] || return 0
  MR=$r
  printf '| %s | %s | %s | %s | %s%s | %s | load %s%s |\n' "$label" "$(tfield "$r" "$name" wall)" "$(wall_range "$name")" \
    "$(tfield "$r" "$name" cpu)" "$(mib "$(tfield "$r" "$name" rss)")" "${rss_detail:+ ($rss_detail)}" \
    "$stored" "$(cat "$WORK/round-$r/$name.load")" "${notes:+; $notes}"
}

at() { cat "$WORK/round-$MR/$1"; }           # a note of the median round
atr() { mib "$(cat "$WORK/round-$MR/$1.rss")"; } # a per-process peak of the median round
lb_own() { mib $(($(jq .peak_rss_bytes "$WORK/round-$MR/$1.json") / 1024)); }

backup_table() {
  echo "| method | wall s (median) | range | CPU s user+sys | peak RSS MiB | stored MB | notes |"
  echo "|---|---:|---:|---:|---|---|---|"
  row a "(a) \`pg_dump -Fc -Z0 > /dev/null\`" "" "$(mb "$DUMP_BYTES") (the dump, uncompressed)" ""
  row b "(b) \`pg_dump -Fc -Z0 \\| zstd -3 > /dev/null\`" "pg_dump $(MR=$(median_round b) atr b.pg_dump), zstd $(MR=$(median_round b) atr b.zstd)" \
    "$(mb "$ZSTD_BYTES") (zstd -3 of the dump)" ""
  row b2 "(b2) the same \`> FILE && sync FILE\` (durable, like a real destination)" "" "$(mb "$ZSTD_BYTES")" ""
  MR=$(median_round c1)
  row c1 "(c1) lifeboat → \`file://\`" "lifeboat alone $(lb_own c1)" "$(mb "$(at c1.stored)")" \
    "$(jq -r '.mib_per_s | floor' "$WORK/round-$MR/c1.json") MiB/s of dump"
  MR=$(median_round c2)
  row c2 "(c2) lifeboat → S3 us-east-1 + eu-west-1" "lifeboat alone $(lb_own c2)" "$(mb "$(at c2.stored)") × 2" \
    "$(jq -r '.mib_per_s | floor' "$WORK/round-$MR/c2.json") MiB/s of dump"
  MR=$(median_round d)
  row d "(d) original: \`pg_dump -Fc\` file → \`gzip -9\` → \`openssl enc -aes-256-cbc\` → \`aws s3 cp\` ×2" "max of the steps" \
    "$(mb "$(at d.stored)") × 2" "$(at d.steps)"
  MR=$(median_round e)
  row e "(e) \`pg_dump -Fc -Z0 \\| restic backup --stdin\` → S3" "pg_dump $(atr e.pg_dump), restic $(atr e.restic)" \
    "$(mb "$(at e.stored)")" "one region"
  if [ -f "$WORK/round-1/f.failed" ]; then
    echo "| (f) pgBackRest | – | – | – | – | – | failed: $(tr '|' / <"$WORK/round-1/f.failed") |"
  elif [ -f "$WORK/round-1/f.time" ]; then
    MR=1
    row f "(f) pgBackRest full, physical → S3 (TLS via stunnel)" "" "$(mb "$(at f.stored)")" \
      "one round; copies the whole cluster, $(mb "$(at f.cluster)") MB on disk incl. indexes; zst-3, aes-256-cbc, process-max=1"
  fi
}

restore_table() {
  echo "| method | wall s (median) | range | CPU s user+sys | peak RSS MiB | reads MB | notes |"
  echo "|---|---:|---:|---:|---|---|---|"
  row rb "bare \`createdb; pg_restore -d NEW dump\` (local \`-Fc -Z0\` file)" "" "$(mb "$DUMP_BYTES")" ""
  row rb1 "the same with \`--single-transaction --exit-on-error\` (lifeboat's flags)" "" "$(mb "$DUMP_BYTES")" ""
  MR=$(median_round rlf)
  row rlf "lifeboat restore from \`file://\`" "lifeboat alone $(lb_own rlf)" "$(mb "$(at c1.stored)")" ""
  MR=$(median_round rls)
  row rls "lifeboat restore from S3 us-east-1" "lifeboat alone $(lb_own rls)" "$(mb "$(at c2.stored)")" ""
  row rg "not a restore: \`aws s3 cp\` of lifeboat's object to /dev/null (the S3 server's download floor)" "" "$(mb "$(MR=$(median_round c2) at c2.stored)")" ""
  MR=$(median_round rr)
  row rr "\`createdb; restic dump latest \\| pg_restore -d NEW\`" "restic $(atr rr.restic), pg_restore $(atr rr.pg_restore)" \
    "$(mb "$(at e.stored)")" ""
}

ratio() { # NAME_A NAME_B: median wall A / median wall B
  awk -v a="$(tfield "$(median_round "$1")" "$1" wall)" -v b="$(tfield "$(median_round "$2")" "$2" wall)" \
    'BEGIN {printf "%.2f", a / b}'
}

print_tables() {
  local out=$BENCH_HOME/results-s$SCALE.md
  {
    echo "### Scale $SCALE"
    echo
    echo "Database $DB: $(psql -d "$DB" -tAc "SELECT pg_size_pretty(pg_database_size('$DB'))") on disk," \
      "\`pg_dump -Fc -Z0\` $(mb "$DUMP_BYTES") MB; $ROUNDS rounds, round-robin; the median round by wall time," \
      "its CPU and RSS; \`load\` is the 1-minute load average just before it started."
    echo
    echo "Backup"
    echo
    backup_table
    echo
    echo "Restore (into a new database)"
    echo
    restore_table
    echo
    echo "Ratios of median wall times: (c1)/(b) = $(ratio c1 b); (c1)/(b2) = $(ratio c1 b2); (c2)/(d) = $(ratio c2 d); (c2)/(e) = $(ratio c2 e);" \
      "restore file:// / bare = $(ratio rlf rb) (/ single-transaction bare = $(ratio rlf rb1));" \
      "restore S3 / bare = $(ratio rls rb) (/ single-transaction bare = $(ratio rls rb1))."
    echo
    echo -n "lifeboat's own peak RSS (VmHWM in its report), every round: backup file://"
    for r in $(seq 1 "$ROUNDS"); do echo -n " $(mib $(($(jq .peak_rss_bytes "$WORK/round-$r/c1.json") / 1024)))"; done
    echo -n "; backup 2×S3"
    for r in $(seq 1 "$ROUNDS"); do echo -n " $(mib $(($(jq .peak_rss_bytes "$WORK/round-$r/c2.json") / 1024)))"; done
    echo -n "; restore S3"
    for r in $(seq 1 "$ROUNDS"); do echo -n " $(mib $(($(jq .peak_rss_bytes "$WORK/round-$r/rls.json") / 1024)))"; done
    echo " MiB."
  } | tee "$out"
  log "tables written to $out"
}

# Each round's backups are deleted after its restores: moto and /tmp stay small.
drop_round_backups() {
  rm -rf "${WORK:?}/lb-file"
  aws --endpoint-url "$S3_ENDPOINT" s3 rm --quiet --recursive "s3://lb-use1/s$SCALE/"
  aws --endpoint-url "$S3_ENDPOINT" s3 rm --quiet --recursive "s3://lb-euw1/s$SCALE/"
  aws --endpoint-url "$S3_ENDPOINT" s3 rm --quiet --recursive "s3://restic/s$SCALE-r$ROUND/"
}

run_round() {
  RD=$WORK/round-$ROUND
  mkdir -p "$RD"
  log "round $ROUND/$ROUNDS: backups"
  log "(a) pg_dump";        backup_a_pgdump
  log "(b) pg_dump | zstd"; backup_b_zstd
  log "(b2) pg_dump | zstd > file; sync"; backup_b2_zstd_file
  log "(c1) lifeboat → file://";   backup_c1_file
  log "(c2) lifeboat → S3 ×2";     backup_c2_s3
  log "(d) original pipeline";     backup_d_original
  log "(e) restic";                backup_e_restic
  if [ "$ROUND" = 1 ] && [ "${BENCH_PGBACKREST:-1}" = 1 ]; then
    log "(f) pgBackRest"; backup_f_pgbackrest
  fi
  log "round $ROUND/$ROUNDS: restores"
  log "bare pg_restore";           restore_bare
  log "bare pg_restore, 1 tx";     restore_bare_1tx
  log "lifeboat restore file://";  restore_lifeboat rlf "$LB_FILE_URL"
  log "lifeboat restore S3";       restore_lifeboat rls "$LB_S3_USE1"
  log "S3 download floor";          restore_floor_s3_get
  log "restic restore";            restore_restic
  drop_round_backups
  log "round $ROUND: a $(wall a) s, b $(wall b) s, b2 $(wall b2) s, c1 $(wall c1) s, c2 $(wall c2) s, d $(wall d) s, e $(wall e) s;" \
    "restore bare $(wall rb) s, 1tx $(wall rb1) s, lifeboat file $(wall rlf) s, S3 $(wall rls) s, S3 GET $(wall rg) s, restic $(wall rr) s"
}

main() {
  WORK=$(mktemp -d /tmp/lifeboat-bench.XXXXXX)
  # Others may pass through (pgBackRest runs as postgres in a subdirectory)
  # but not list; every secret file is 0600.
  chmod 711 "$WORK"
  export TESTBED_DIR=$WORK
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ "$LOAD_ONLY" = 1 ]; then
    bench_pg_up
    load_dataset
    return
  fi
  ensure_tools
  bench_pg_up
  start_s3
  load_dataset
  make_buckets
  make_secrets
  SOURCE_COUNTS=$(psql -d "$DB" -tAc "$COUNTS_SQL")
  prepare_dump
  for ROUND in $(seq 1 "$ROUNDS"); do run_round; done
  # The raw measurements stay for a second look.
  rm -rf "$BENCH_HOME/raw-s$SCALE"
  mkdir -p "$BENCH_HOME/raw-s$SCALE"
  cp -r "$WORK"/round-* "$BENCH_HOME/raw-s$SCALE/"
  print_tables
}

main
