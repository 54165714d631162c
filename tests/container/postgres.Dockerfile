# Stand-in for the postgres image in the container test (no image registry there): Debian's
# PostgreSQL on the locally made Debian base, with an entrypoint doing what docker-compose.yml
# relies on in the real image (POSTGRES_PASSWORD, POSTGRES_INITDB_ARGS,
# /docker-entrypoint-initdb.d/*.sh on an empty data directory, pg_isready on PATH).
ARG BASE=bridges-base:bookworm
FROM ${BASE}
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]
