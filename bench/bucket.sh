#!/usr/bin/env bash
# Bucket backups against `rclone sync --checksum` (issue 10; results in
# docs/BENCHMARKS.md), side by side in one run on the same moto server: a
# source bucket in us-west-2 of N objects (mixed sizes, 1 KiB to 64 KiB,
# incompressible), copied into eu-west-1 by each tool; then 1% of the
# objects are rewritten and each tool runs again. Prints each run's time
# and lifeboat's peak RSS. Targets: first copy <= 1.25x rclone, the
# 1%-changed run <= 1.0x.
#
#   bench/bucket.sh [N]      objects, default 20000
#
# Needs rclone (Debian's 1.60: apt-get install -y rclone) and python3-boto3.
# Environment: LIFEBOAT_BIN (default: the release build, built when missing).
set -euo pipefail

N=${1:-20000}
[[ $N =~ ^[0-9]+$ ]] || { echo "usage: $0 [N]" >&2; exit 2; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
LB=${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat}
[ -x "$LB" ] || cargo build --release --bin lifeboat
command -v rclone >/dev/null || { echo "rclone is missing: apt-get install -y rclone" >&2; exit 1; }
source scripts/testbed.sh
testbed_up
W=$(mktemp -d /var/tmp/lifeboat-bucket.XXXX)
trap 'testbed_down; rm -rf "$W"' EXIT

"$LB" keygen --id bench --out "$W/keys" >/dev/null
fill() { # fill SEED FRACTION: (re)write that fraction of the N objects
  python3 - "$S3_ENDPOINT" "$N" "$1" "$2" <<'PY'
import boto3, os, random, sys
from concurrent.futures import ThreadPoolExecutor
ep, n, seed, frac = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-west-2")
rnd = random.Random(seed)
keys = [i for i in range(n) if rnd.random() < frac]
def put(i):
    size = 1024 << (i % 7)
    s3.put_object(Bucket="bench-src", Key=f"data/d{i % 100:02}/obj {i}", Body=os.urandom(size))
with ThreadPoolExecutor(16) as ex:
    list(ex.map(put, keys))
print(f"{len(keys)} objects written")
PY
}
python3 - "$S3_ENDPOINT" <<'PY'
import boto3, sys
for b, r in [("bench-src", "us-west-2"), ("bench-lifeboat", "eu-west-1"), ("bench-rclone", "eu-west-1")]:
    boto3.client("s3", endpoint_url=sys.argv[1], region_name=r).create_bucket(
        Bucket=b, CreateBucketConfiguration={"LocationConstraint": r})
PY
fill 1 1.0

# rclone's remote, all from the environment (no config file).
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other
export RCLONE_CONFIG_MOTO_ENDPOINT=$S3_ENDPOINT
export RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
SRC="s3://bench-src/data?region=us-west-2&endpoint=$S3_ENDPOINT"
DST="s3://bench-lifeboat/backups?region=eu-west-1&endpoint=$S3_ENDPOINT"
run() { # run NAME: both tools, printing seconds
  local t0 t1 t2
  t0=$(date +%s.%N)
  "$LB" --log warn backup --bucket "$SRC" --to "$DST" --key-file "$W/keys" --json >"$W/$1.json"
  t1=$(date +%s.%N)
  env -u AWS_CA_BUNDLE rclone sync --checksum moto:bench-src/data moto:bench-rclone/data
  t2=$(date +%s.%N)
  python3 - "$W/$1.json" "$1" "$t0" "$t1" "$t2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t0, t1, t2 = map(float, sys.argv[3:6])
f = r["files"]
print(f"{sys.argv[2]:>10}: lifeboat {t1 - t0:6.1f} s (peak RSS {r['peak_rss_bytes'] / 1048576:.1f} MiB, "
      f"{f['files_new']} new, {f['files_changed']} changed, {f['files_unchanged']} unchanged), "
      f"rclone {t2 - t1:6.1f} s, ratio {(t1 - t0) / (t2 - t1):.2f}")
PY
}
echo "$N objects, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
run first
fill 2 0.01
run 1%-changed
run unchanged
