# syntax=docker/dockerfile:1
# The lifeboat image: the controller and the agent its Jobs run are the same
# binary. Build: docker build -t lifeboat:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
# Caches make rebuilds incremental; the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lifeboat \
 && install -D -m 0755 target/release/lifeboat /out/lifeboat

FROM debian:bookworm-slim
# pg_dump, pg_dumpall, pg_restore, psql, pg_basebackup and pg_receivewal of
# PostgreSQL 15 (Debian's own packages), and the server, which a physical
# restore runs to replay WAL. pg_dump refuses servers newer than itself: to
# back up 16 or later, install that major's packages from the PGDG apt
# repository instead. The `postgres` user gets uid 999 (the postgres image's),
# the uid a physical RestoreRequest runs as by default: PostgreSQL refuses a
# uid without a name. No cluster is created in the image.
ARG PG_MAJOR=15
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin postgres \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/lifeboat.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates "postgresql-client-${PG_MAJOR}" "postgresql-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 lifeboat \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin lifeboat
COPY --from=build /out/lifeboat /usr/local/bin/lifeboat
# Call the tools directly rather than through Debian's pg_wrapper (perl).
ENV LIFEBOAT_PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin \
    TMPDIR=/tmp
# Numeric, so that runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["lifeboat"]
