#!/usr/bin/env bash
# bench/restore-request.sh: RTO of a RestoreRequest's two Jobs (plan --verify quick, restore --check) from
# the local S3 server against a bare pg_restore of a local dump, one run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed.sh
testbed_up
LB=${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-target}/release/lifeboat}
SCALE=${SCALE:-20}
W=$(mktemp -d)
aws --endpoint-url "$S3_ENDPOINT" --region us-east-1 s3api create-bucket --bucket rbench >/dev/null
createdb bench
pgbench -i -q -s "$SCALE" bench 2>&1 | tail -1
psql -Atc "select pg_size_pretty(pg_database_size('bench'))" bench
$LB keygen --id k1 --out $W/keys >/dev/null
export LIFEBOAT_KEY_FILE=$W/keys
DEST="s3://rbench/shop/bench?region=us-east-1&endpoint=$S3_ENDPOINT"
$LB backup --database bench --to "$DEST" --policy bench --json > $W/backup.json
pg_dump -Fc -Z0 -f $W/bench.dump bench
t() { local s=$(date +%s.%N); "$@" >/dev/null; local e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "bare pg_restore (createdb + pg_restore -d, local -Fc -Z0 dump): $(t bash -c "createdb bare1 && pg_restore --single-transaction -d bare1 $W/bench.dump") s"
PLAN=$(t $LB plan --from "$DEST" --verify quick --target-db rr1 --json)
RESTORE=$(t $LB restore --from "$DEST" --target-db rr1 --create --no-owner --check "select count(*) = $((SCALE*100000)) from pgbench_accounts" --json)
echo "lifeboat plan --verify quick: $PLAN s; restore --check: $RESTORE s; sum $(echo "$PLAN + $RESTORE" | bc) s"
echo "lifeboat plan --verify full: $(t $LB plan --from "$DEST" --verify full --target-db rr1 --json) s"
rm -rf $W
