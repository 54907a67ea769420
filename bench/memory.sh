#!/usr/bin/env bash
# Peak memory on a big database (issue 13; results in docs/BENCHMARKS.md):
# a backup of a generated database to a directory and two S3 regions (moto)
# at once, then a restore from one region, with the release build; prints
# the dump size, each command's own peak RSS (VmHWM), time and throughput.
#
#   bench/memory.sh [MB]     dump size to generate, default 5000 (~3 min data,
#                            ~2 min backup, ~40 s restore on 2 cores)
#
# Environment: LIFEBOAT_BIN (default: the release build in CARGO_TARGET_DIR,
# built when missing).
set -euo pipefail

MB=${1:-5000}
[[ $MB =~ ^[0-9]+$ ]] || { echo "usage: $0 [MB]" >&2; exit 2; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
LB=${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat}
[ -x "$LB" ] || cargo build --release --bin lifeboat
source scripts/testbed.sh
testbed_up
W=$(mktemp -d /var/tmp/lifeboat-memory.XXXX)
trap 'testbed_down; rm -rf "$W"' EXIT

"$LB" keygen --id bench --out "$W/keys" >/dev/null
python3 - <<PY
import boto3
for r in ["eu-west-1", "us-east-1"]:
    s3 = boto3.client("s3", endpoint_url="$S3_ENDPOINT", region_name=r)
    kw = {} if r == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": r}}
    s3.create_bucket(Bucket="memory-" + r, **kw)
PY

# About 150 MB of dump per 100,000 rows: mostly incompressible bytes.
CHUNKS=$(( (MB + 149) / 150 ))
psql -X -q -c "create database memory_bench"
psql -X -q -d memory_bench -c "create extension if not exists pgcrypto; create table big (i int, t text, r bytea)"
for c in $(seq 0 $((CHUNKS - 1))); do
  psql -X -q -d memory_bench -c "insert into big select i, md5(i::text) || repeat(' lorem ipsum ', 5), gen_random_bytes(700) from generate_series($c * 100000 + 1, ($c + 1) * 100000) i"
done

EU="s3://memory-eu-west-1/bench?region=eu-west-1&endpoint=$S3_ENDPOINT"
US="s3://memory-us-east-1/bench?region=us-east-1&endpoint=$S3_ENDPOINT"
"$LB" --log warn backup -d memory_bench --key-file "$W/keys" \
  --to "file://$W/backups" --to "$EU" --to "$US" --json >"$W/backup.json"
"$LB" --log warn restore --from "$EU" --key-file "$W/keys" \
  --target-db memory_bench_restored --create --json >"$W/restore.json"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
b = json.load(open(f"{w}/backup.json"))
r = json.load(open(f"{w}/restore.json"))
print(f"backup  (directory + 2 S3 regions): dump {b['bytes_in'] / 1e6:,.0f} MB, peak RSS "
      f"{b['peak_rss_bytes'] / 1048576:.1f} MiB, {b['seconds']:.1f} s, {b['mib_per_s']:.1f} MiB/s")
print(f"restore (from one S3 region):       peak RSS {r['peak_rss_bytes'] / 1048576:.1f} MiB, "
      f"{r['seconds']:.1f} s, {r['mib_per_s']:.1f} MiB/s")
PY
test "$(psql -X -A -t -d memory_bench_restored -c 'select count(*) from big')" = "$((CHUNKS * 100000))"
