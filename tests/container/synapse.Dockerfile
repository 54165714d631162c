# Stand-in for matrixdotorg/synapse in the container test (no image registry there): the
# same Synapse release from PyPI on the locally made Debian base. Only what
# docker-compose.yml uses of the real image: python3 with Synapse and psycopg2 (Debian's),
# curl for the health check, register_new_matrix_user on PATH.
ARG BASE=bridges-base:bookworm
FROM ${BASE}
ARG SYNAPSE_VERSION
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-psycopg2 curl \
    && rm -rf /var/lib/apt/lists/*
# host-ca.crt: the build host's CA bundle (scripts/container-test copies it), for pip only.
COPY host-ca.crt /tmp/host-ca.crt
RUN python3 -m venv --system-site-packages /opt/synapse \
    && PIP_CERT=/tmp/host-ca.crt /opt/synapse/bin/pip install --no-cache-dir \
        --disable-pip-version-check --only-binary ':all:' "matrix-synapse==${SYNAPSE_VERSION}" \
    && rm /tmp/host-ca.crt
ENV PATH=/opt/synapse/bin:$PATH
