#!/usr/bin/env bash
# File backup benchmark (issue 10; results in docs/BENCHMARKS.md): lifeboat
# against restic 0.14 (Debian), side by side in one run, on the same tree
# and the same S3 server (moto on loopback, one bucket each) or local
# directories.
#
#   bench/files.sh [SET...]     sets: mixed (~10,000 files, ~1 GB) and
#                               small (100,000 files of 1 KiB); default both
#
# Each round, for each set and each target (BENCH_TARGETS, default "s3 dir"),
# both tools run every step on the same state of a fresh copy of the tree:
#   first      the first backup into an empty store
#   unchanged  a second backup, nothing changed
#   changed    1 % of the files changed (bench/files_tree.py change), backup
#   runs 2–7   six more rounds of 1 % changed (not timed as steps)
#   restore    the newest backup into an empty directory (then diff -r)
#   storage    bytes in the store after the first backup and 7 changed runs
# Times are wall seconds (/usr/bin/time), with each run's peak RSS; the load
# average is printed before each step (the machine is shared).
#
# Environment: BENCH_ROUNDS (default 1: the median is printed when more),
# BENCH_TARGETS, BENCH_HOME (default /var/tmp/lifeboat-files-bench: the
# generated trees are kept there and reused), LIFEBOAT_BIN (default: the
# release build, built when missing), BENCH_MIXED_MB (default 1000),
# BENCH_CHANGED (changed runs, default 7; fewer makes the storage figure
# incomparable), BENCH_RESTORES (restore pairs per round, default 1: the
# median of all is printed).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SETS=${*:-mixed small}
ROUNDS=${BENCH_ROUNDS:-1}
TARGETS=${BENCH_TARGETS:-s3 dir}
BENCH_HOME=${BENCH_HOME:-/var/tmp/lifeboat-files-bench}
MIXED_MB=${BENCH_MIXED_MB:-1000}
CHANGED=${BENCH_CHANGED:-7}
RESTORES=${BENCH_RESTORES:-1}
GEN="python3 $REPO/bench/files_tree.py"
log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

# shellcheck source=../scripts/testbed.sh
source "$REPO/scripts/testbed.sh"
if [ -z "${LIFEBOAT_BIN:-}" ]; then
  log "building lifeboat (release)"
  (cd "$REPO" && cargo build --release --quiet --bin lifeboat)
  LIFEBOAT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat
fi
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
log "$("$LIFEBOAT_BIN" --version 2>/dev/null || echo lifeboat) against $(restic version)"

WORK=$(mktemp -d /var/tmp/lifeboat-files-bench-run.XXXXXX)
chmod 700 "$WORK"
TESTBED_DIR=$WORK
cleanup() {
  local rc=$?
  stop_s3
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
start_s3
export AWS_DEFAULT_REGION=us-east-1

"$LIFEBOAT_BIN" keygen --id bench --out "$WORK/keys" >/dev/null
# restic reads its password from a file (never argv); its cache is its own.
head -c 24 /dev/urandom | base64 >"$WORK/restic-password"
export RESTIC_PASSWORD_FILE=$WORK/restic-password RESTIC_CACHE_DIR=$WORK/restic-cache

pristine() { # SET → a generated tree, kept between runs
  local dir=$BENCH_HOME/$1-v1
  if [ ! -d "$dir" ]; then
    log "generating the $1 tree in $dir"
    case $1 in
      mixed) $GEN mixed "$dir.tmp" --mb "$MIXED_MB" >&2 ;;
      small) $GEN small "$dir.tmp" >&2 ;;
      *) echo "unknown set $1" >&2; exit 2 ;;
    esac
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

make_bucket() {
  python3 - "$1" <<'PY'
import boto3, os, sys
boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
PY
}

bucket_bytes() {
  python3 - "$1" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
total = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    total += sum(o["Size"] for o in page.get("Contents", []))
print(total)
PY
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# timed SET TARGET TOOL STEP ROUND -- command...: one line of results
timed() {
  local set=$1 target=$2 tool=$3 step=$4 round=$5
  shift 6
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err"; then
    log "$tool $step failed:"; cat "$WORK/err" >&2; tail -5 "$WORK/out" >&2; exit 1
  fi
  read -r secs kb <"$WORK/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$set" "$target" "$tool" "$step" "$round" "$secs" "$((kb / 1024))" "$load" >>"$RESULTS"
  log "$set $target $tool $step: ${secs}s, peak RSS $((kb / 1024)) MiB, load $load"
}

one_round() { # SET TARGET ROUND
  local set=$1 target=$2 round=$3
  local src=$WORK/src-$set
  rm -rf "$src"
  mkdir "$src"
  cp -a "$(pristine "$set")/." "$src"
  local lb rs
  case $target in
    s3)
      make_bucket "lb-$set-$round"
      make_bucket "rs-$set-$round"
      lb="s3://lb-$set-$round/bench?region=us-east-1&endpoint=$S3_ENDPOINT"
      rs="s3:$S3_ENDPOINT/rs-$set-$round"
      ;;
    dir)
      lb="file://$WORK/lb-$set-$round"
      rs="$WORK/rs-$set-$round"
      ;;
  esac
  local -a LB=("$LIFEBOAT_BIN" --log warn)
  local -a RS=(restic -q -r "$rs" -o s3.region=us-east-1)
  "${RS[@]}" init >/dev/null
  [ "$round" = 1 ] && log "restic repository: $("${RS[@]}" cat config | tr -d '\n ')"
  lb_backup() { timed "$set" "$target" lifeboat "$1" "$round" -- "${LB[@]}" backup --path "$src" --key-file "$WORK/keys" --to "$lb" --json; }
  rs_backup() { timed "$set" "$target" restic "$1" "$round" -- "${RS[@]}" backup "$src"; }
  lb_backup first; rs_backup first
  lb_backup unchanged; rs_backup unchanged
  for r in $(seq 1 "$CHANGED"); do
    $GEN change "$src" --percent 1 --round "$r" >/dev/null
    lb_backup "changed$r"; rs_backup "changed$r"
  done
  for _ in $(seq 1 "$RESTORES"); do
    rm -rf "$WORK/restored-lb" "$WORK/restored-rs"
    sync
    timed "$set" "$target" lifeboat restore "$round" -- "${LB[@]}" restore --from "$lb" --key-file "$WORK/keys" --to-dir "$WORK/restored-lb" --json
    timed "$set" "$target" restic restore "$round" -- "${RS[@]}" restore latest --target "$WORK/restored-rs"
    diff -r -q "$src" "$WORK/restored-lb" || { log "lifeboat restored something else"; exit 1; }
    diff -r -q "$src" "$WORK/restored-rs$src" || { log "restic restored something else"; exit 1; }
  done
  rm -rf "$WORK/restored-lb" "$WORK/restored-rs"
  local lb_bytes rs_bytes
  case $target in
    s3) lb_bytes=$(bucket_bytes "lb-$set-$round"); rs_bytes=$(bucket_bytes "rs-$set-$round") ;;
    dir) lb_bytes=$(du -sb "$WORK/lb-$set-$round" | cut -f1); rs_bytes=$(du -sb "$rs" | cut -f1) ;;
  esac
  printf '%s\t%s\tlifeboat\tstorage\t%s\t%s\t0\t-\n' "$set" "$target" "$round" "$lb_bytes" >>"$RESULTS"
  printf '%s\t%s\trestic\tstorage\t%s\t%s\t0\t-\n' "$set" "$target" "$round" "$rs_bytes" >>"$RESULTS"
  log "$set $target storage after $CHANGED changed runs: lifeboat $lb_bytes, restic $rs_bytes bytes"
  # Free moto's memory and the disk before the next round.
  case $target in
    s3) python3 - "lb-$set-$round" "rs-$set-$round" <<'PY'
import boto3, os, sys
s3 = boto3.resource("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
for b in sys.argv[1:]:
    s3.Bucket(b).objects.all().delete()
PY
    ;;
    dir) rm -rf "$WORK/lb-$set-$round" "$rs" ;;
  esac
  rm -rf "$src"
}

for set in $SETS; do
  for target in $TARGETS; do
    for round in $(seq 1 "$ROUNDS"); do
      one_round "$set" "$target" "$round"
    done
  done
done

python3 - "$RESULTS" "$(nproc)" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for set_, target, tool, step, rnd, val, rss, load in rows:
    by[(set_, target, step, tool)].append((float(val), int(rss), load))
print(f"\n{sys.argv[2]} cores; seconds are the median of the rounds (all rounds in brackets), then peak RSS MiB and the 1-minute load before the step\n")
for set_ in dict.fromkeys(r[0] for r in rows):
    for target in dict.fromkeys(r[1] for r in rows if r[0] == set_):
        print(f"{set_} → {target}")
        print(f"  {'step':<10} {'lifeboat':>28} {'restic':>28} {'ratio':>6}")
        steps = dict.fromkeys(r[3] for r in rows if r[0] == set_ and r[1] == target)
        for step in steps:
            cell, med = {}, {}
            for tool in ("lifeboat", "restic"):
                v = by[(set_, target, step, tool)]
                med[tool] = statistics.median(x[0] for x in v)
                if step == "storage":
                    cell[tool] = f"{med[tool] / 1e6:.1f} MB"
                else:
                    cell[tool] = f"{med[tool]:.2f} s [{' '.join(f'{x[0]:.2f}' for x in v)}] {max(x[1] for x in v)} MiB ld {v[-1][2]}"
            ratio = med["lifeboat"] / med["restic"] if med["restic"] else float("nan")
            print(f"  {step:<10} {cell['lifeboat']:>28} {cell['restic']:>28} {ratio:>6.2f}")
        print()
PY
