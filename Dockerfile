# syntax=docker/dockerfile:1
# The lifeboat image: the controller and the agent its Jobs run are the same
# binary. Build: docker build -t lifeboat:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
# Caches make rebuilds incremental; the binary is copied out of the cache mount.
# No debug info and symbols stripped: the release profile keeps line tables
# for profiling (debug = 1, 314 MB); the image needs none of it (~39 MB).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lifeboat \
 && install -D -m 0755 target/release/lifeboat /out/lifeboat

FROM debian:bookworm-slim
# PostgreSQL 13 to 17, each in /usr/lib/postgresql/<major>/bin, where
# lifeboat picks the major a server needs (docs/DESIGN.md, "PostgreSQL
# majors"): the client programs (pg_dump, pg_dumpall, pg_restore, psql,
# pg_basebackup, pg_receivewal) and the server, which a physical restore runs
# to replay WAL and which must be the backed-up server's own major. Debian 12
# ships only 15, so they come from the PostgreSQL project's apt repository
# (PGDG), set up by the script Debian's postgresql-common ships for it (its
# signing key included). PG_MAJORS narrows the set for a smaller image; a
# major left out fails backups and restores of that major with a message
# naming the package to install.
#
# The `postgres` user gets uid 999 (the postgres image's), the uid a physical
# RestoreRequest runs as by default: PostgreSQL refuses a uid without a name.
# No cluster is created in the image. tini is PID 1: lifeboat spawns
# PostgreSQL's programs and servers, and an init reaps what they leave and
# forwards signals (a Job's SIGTERM reaches lifeboat, which stops its children).
ARG PG_MAJORS="13 14 15 16 17"
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin postgres \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/lifeboat.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates postgresql-common tini \
 && for setup in /usr/share/postgresql-common/pgdg/*.sh; do "$setup" -y; done \
 && packages="" \
 && for major in $PG_MAJORS; do packages="$packages postgresql-$major postgresql-client-$major"; done \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages \
 && for major in $PG_MAJORS; do test -x "/usr/lib/postgresql/$major/bin/pg_dump" \
      && test -x "/usr/lib/postgresql/$major/bin/postgres" || exit 1; done \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 lifeboat \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin lifeboat
COPY --from=build /out/lifeboat /usr/local/bin/lifeboat
# Programs are called directly (not through Debian's pg_wrapper, perl), one
# directory per major; LIFEBOAT_PG_ROOT is the default, spelled out.
ENV LIFEBOAT_PG_ROOT=/usr/lib/postgresql \
    TMPDIR=/tmp
# Numeric, so that runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/bin/tini", "--", "lifeboat"]
