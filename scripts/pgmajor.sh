# shellcheck shell=bash
# PostgreSQL servers of other majors for the tests (sourced by
# scripts/testbed.sh). Debian 12 ships only PostgreSQL 15; Debian 11
# (bullseye) ships 13 and Debian 13 (trixie) 17, both through the Debian
# mirror this machine's apt already uses. For such a major:
#
#   ensure_pg_rootfs MAJOR   a minimal root filesystem of its Debian release
#                            with the server (debootstrap --variant=minbase),
#                            cached in $LIFEBOAT_ROOTFS_CACHE/<suite>; built in
#                            a temporary directory and renamed when complete,
#                            so an interrupted build is never taken for one.
#   pg_major_wrappers DIR    DIR/<major>/bin: PostgreSQL's programs of every
#                            major in $LIFEBOAT_PG_MAJORS, as lifeboat's
#                            --pg-root expects them (15: the host's own).
#   start_pg_major MAJOR     initdb and start its server inside the root
#                            filesystem (chroot, as its postgres user) on a
#                            loopback port; exports LIFEBOAT_PG<MAJOR>_PORT.
#
# The wrappers run a program through its root filesystem's own dynamic loader
# and libraries rather than under chroot: paths, sockets and users then mean
# the same as on the host — pg_receivewal writes into the host's spool, and a
# physical restore runs `postgres` as a non-root user, which cannot chroot.

# Not under $HOME: root's is 0700, and a physical restore runs the wrapped
# `postgres` as the postgres user, who must reach the programs.
LIFEBOAT_ROOTFS_CACHE=${LIFEBOAT_ROOTFS_CACHE:-/var/cache/lifeboat/rootfs}

# The Debian release that ships a major, or nothing for the host's own (15).
pg_major_suite() {
  case "$1" in
    13) echo bullseye ;;
    17) echo trixie ;;
    15) ;;
    *) testbed_log "no Debian release known for PostgreSQL $1 (13, 15 and 17 are)"; return 1 ;;
  esac
}

# The Debian archive apt uses here (the first non-security `deb` source), read
# from its sources at run time so no mirror is written down anywhere.
debian_mirror() {
  python3 - <<'EOF'
import glob, re
def entries():
    for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            lines = open(f).read().splitlines()
        except OSError:
            continue
        for l in lines:
            l = re.sub(r"\[[^]]*\]", "", l.split("#")[0]).split()
            if len(l) >= 3 and l[0] == "deb":
                yield l[1], [l[2]]
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in open(f).read().split("\n\n"):
            fields = {}
            for l in stanza.splitlines():
                if ":" in l and not l.startswith((" ", "#")):
                    k, v = l.split(":", 1)
                    fields[k.strip().lower()] = v.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                for uri in fields.get("uris", []):
                    yield uri, fields.get("suites", [])
for uri, suites in entries():
    if uri.rstrip("/").endswith("/debian") and not any(s.endswith("-security") for s in suites):
        print(uri.rstrip("/"))
        break
else:
    raise SystemExit("no Debian archive among apt's sources (/etc/apt/sources.list*)")
EOF
}

ensure_debootstrap() {
  if ! command -v debootstrap >/dev/null; then
    testbed_log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
}

# Prints the root filesystem of MAJOR's Debian release, building it when absent.
ensure_pg_rootfs() {
  local major=$1 suite root tmp mirror start
  suite=$(pg_major_suite "$major") || return 1
  root="$LIFEBOAT_ROOTFS_CACHE/$suite"
  if [ ! -x "$root/usr/lib/postgresql/$major/bin/postgres" ]; then
    ensure_debootstrap
    mirror=$(debian_mirror) || return 1
    mkdir -p "$LIFEBOAT_ROOTFS_CACHE"
    tmp=$(mktemp -d "$LIFEBOAT_ROOTFS_CACHE/.$suite.XXXXXX") && chmod 0755 "$tmp"
    testbed_log "building a $suite root filesystem with PostgreSQL $major in $root (once; about a minute)"
    start=$(date +%s)
    # --include pulls the server, its client and libpq; minbase keeps it small.
    if ! debootstrap --variant=minbase --include="postgresql-$major" "$suite" "$tmp" "$mirror" \
      >"$tmp.log" 2>&1; then
      testbed_log "debootstrap $suite failed; last lines of $tmp.log:"
      tail -n 20 "$tmp.log" >&2
      rm -rf "$tmp"
      return 1
    fi
    # Trim what no test reads: package lists and caches, documentation.
    rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* "$tmp/usr/share/doc" "$tmp/usr/share/man"
    rm -f "$tmp.log"
    # Another test run on this machine may have finished the same build
    # meanwhile and be using it: keep that one.
    if [ -x "$root/usr/lib/postgresql/$major/bin/postgres" ]; then
      rm -rf "$tmp"
    else
      rm -rf "$root"
      mv -T "$tmp" "$root" || { rm -rf "$tmp"; return 1; }
      testbed_log "built $root in $(($(date +%s) - start)) s ($(du -sm "$root" | cut -f1) MB)"
    fi
  fi
  echo "$root"
}

# One executable script per program, in DIR/MAJOR/bin.
pg_major_wrappers() {
  local dir=$1 major root ld libs p argv0
  for major in ${LIFEBOAT_PG_MAJORS:-}; do
    mkdir -p "$dir/$major/bin"
    if [ -z "$(pg_major_suite "$major")" ]; then
      for p in "/usr/lib/postgresql/$major/bin/"*; do ln -sf "$p" "$dir/$major/bin/"; done
      continue
    fi
    root=$(ensure_pg_rootfs "$major") || return 1
    # The loader's own path inside the root (its symlinks are absolute there).
    ld=$root$(chroot "$root" readlink -f /lib64/ld-linux-x86-64.so.2)
    libs="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/postgresql/$major/lib"
    for p in "$root/usr/lib/postgresql/$major/bin/"*; do
      # argv[0] is the real program's path: PostgreSQL finds its share
      # directory relative to it. pg_dumpall instead gets its wrapper's path
      # (where the loader can say so: glibc 2.33, trixie's, can), as it runs
      # the pg_dump beside it.
      argv0=
      if [ "${p##*/}" = pg_dumpall ] && "$ld" --help 2>/dev/null | grep -q -- --argv0; then
        argv0='--argv0 "$0" '
      fi
      printf '#!/bin/sh\nexec %s --library-path %s %s%s "$@"\n' "$ld" "$libs" "$argv0" "$p" >"$dir/$major/bin/${p##*/}"
      chmod 0755 "$dir/$major/bin/${p##*/}"
    done
  done
}

# Runs a command inside MAJOR's root filesystem as its postgres user.
in_pg_rootfs() {
  local root=$1; shift
  chroot "$root" runuser -u postgres -- "$@"
}

# start_pg_major MAJOR: a fresh cluster of that major inside its root
# filesystem (15: the host's, started by start_postgres), listening on a
# free loopback port; exports LIFEBOAT_PG<MAJOR>_PORT.
start_pg_major() {
  local major=$1 root port data bin
  if [ -z "$(pg_major_suite "$major")" ]; then
    export "LIFEBOAT_PG${major}_PORT=$PGPORT"
    return
  fi
  root=$(ensure_pg_rootfs "$major") || return 1
  bin="/usr/lib/postgresql/$major/bin"
  port=$(free_port)
  data="/var/lib/postgresql/lifeboat-$port"
  testbed_log "starting PostgreSQL $major on 127.0.0.1:$port (in $root)"
  # The C locale: no locale files needed, in the chroot or on the host
  # (where a physical restore of it runs the same server).
  in_pg_rootfs "$root" "$bin/initdb" -D "$data" -U postgres -A trust --no-sync --locale=C -E UTF8 >"$TESTBED_DIR/pg$major-initdb.log" 2>&1 \
    || { cat "$TESTBED_DIR/pg$major-initdb.log" >&2; return 1; }
  # Physical backups stream WAL (wal-stream on a slot): archive_mode stays
  # off, since the archive_command's lifeboat is not inside the chroot.
  in_pg_rootfs "$root" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -o \
    "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c wal_level=replica -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$root$data/server.log" >&2; return 1; }
  PG_MAJOR_DATA+=("$root:$major:$data")
  export "LIFEBOAT_PG${major}_PORT=$port"
}

stop_pg_majors() {
  local entry root major data
  for entry in "${PG_MAJOR_DATA[@]}"; do
    IFS=: read -r root major data <<<"$entry"
    in_pg_rootfs "$root" "/usr/lib/postgresql/$major/bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "${root:?}$data"
  done
  PG_MAJOR_DATA=()
}
PG_MAJOR_DATA=()

# pg_majors_up: every major of $LIFEBOAT_PG_MAJORS started, and their
# programs in $TESTBED_DIR/pg-root/<major>/bin (exported as LIFEBOAT_PG_ROOT).
pg_majors_up() {
  local major
  [ -n "${LIFEBOAT_PG_MAJORS:-}" ] || return 0
  pg_major_wrappers "$TESTBED_DIR/pg-root" || return 1
  for major in $LIFEBOAT_PG_MAJORS; do start_pg_major "$major" || return 1; done
  export LIFEBOAT_PG_ROOT="$TESTBED_DIR/pg-root"
}
