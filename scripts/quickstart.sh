#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine, in one command:
# start a throwaway PostgreSQL 15 with sample data, back it up (compressed,
# encrypted, verified) to a local directory, restore it into a new database,
# and show that the two databases match. No cluster, no S3 needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed.sh
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

step "building lifeboat (the first build takes several minutes)"
cargo build --quiet
LIFEBOAT=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/lifeboat
OUT=${LIFEBOAT_QUICKSTART_DIR:-$PWD/quickstart}
rm -rf "$OUT" && mkdir -p "$OUT"

testbed_up --no-s3

step "creating the sample database 'shop'"
psql -q -X -v ON_ERROR_STOP=1 -c "create database shop"
psql -q -X -v ON_ERROR_STOP=1 -d shop -f scripts/sample-data.sql >/dev/null
psql -X -d shop -c "select count(*) as orders, pg_size_pretty(pg_database_size('shop')) as size from shop.orders"

step "lifeboat keygen: a master key file (mode 0600)"
"$LIFEBOAT" keygen --id quickstart-1 --out "$OUT/keys"

step "lifeboat backup: pg_dump → zstd → AES-256-GCM → $OUT/backups"
"$LIFEBOAT" backup --database shop --key-file "$OUT/keys" --to "file://$OUT/backups"

step "lifeboat list: recovery points, from the manifests alone"
"$LIFEBOAT" list --from "file://$OUT/backups" --key-file "$OUT/keys"

step "lifeboat verify: every byte re-read and authenticated"
"$LIFEBOAT" verify --from "file://$OUT/backups" --key-file "$OUT/keys"

step "lifeboat restore: latest backup → new database 'shop_restored'"
"$LIFEBOAT" restore --from "file://$OUT/backups" --key-file "$OUT/keys" --target-db shop_restored --create

step "comparing the two databases (pg_dump of schema and data)"
pg_dump --restrict-key=quickstart -d shop >"$OUT/shop.sql"
pg_dump --restrict-key=quickstart -d shop_restored >"$OUT/shop_restored.sql"
if cmp -s "$OUT/shop.sql" "$OUT/shop_restored.sql"; then
  printf '\033[1;32m✓ shop and shop_restored are identical (%s lines of schema and data)\033[0m\n' "$(wc -l <"$OUT/shop.sql")"
  echo "The backup is in $OUT/backups; the key in $OUT/keys."
else
  diff "$OUT/shop.sql" "$OUT/shop_restored.sql" | head -20
  echo "✗ the restored database differs" >&2
  exit 1
fi
