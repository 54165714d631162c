# One image per bridge; BRIDGE is discord, telegram, whatsapp or wechat.
#
#   docker build --build-arg BRIDGE=discord -t bridges/discord .
#       builds the bridge in a `rust` stage (the dependencies in a layer of their own, kept
#       while only the bridges' code changes).
#   docker build --build-arg BRIDGE=discord --target prebuilt -t bridges/discord .
#       copies a binary built on the host instead, from prebuilt/bridge-discord in the build
#       context (`cargo build --release -p bridge-discord`, then copy it there).
#
# RUNTIME_BASE replaces debian:bookworm-slim (scripts/container-test uses an image it makes
# with debootstrap); BUILDER replaces the rust image.
#
# The container keeps its config, registration and SQLite database in /data. It starts as
# root, gives /data to UID:GID (default 1337:1337) and runs the bridge as that user; see
# docker/entrypoint.sh. The stages are in this order so that the classic builder, which
# builds every stage up to the target, reaches `prebuilt` without the rust image.
ARG RUNTIME_BASE=debian:bookworm-slim
ARG BUILDER=rust:1-slim-bookworm

FROM ${RUNTIME_BASE} AS runtime
# tini reaps and forwards signals; setpriv (util-linux, in every Debian image) drops root.
RUN if ! command -v tini >/dev/null || [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends ca-certificates tini \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
ENV UID=1337 GID=1337
WORKDIR /data
VOLUME /data
ENTRYPOINT ["tini", "--", "/usr/local/bin/entrypoint.sh"]

FROM runtime AS prebuilt
ARG BRIDGE
# Straight to its place (a copy elsewhere would stay in a layer); the wildcard lets the
# classic builder pass this stage on its way to the default target without the file.
COPY docker/entrypoint.sh prebuilt/bridge-${BRIDGE}* /usr/local/bin/
RUN if [ -f "/usr/local/bin/bridge-$BRIDGE" ]; then \
        ln -s "bridge-$BRIDGE" /usr/local/bin/bridge; \
    else \
        echo "note: no prebuilt/bridge-$BRIDGE in the build context (needed by --target prebuilt only)"; \
    fi

FROM ${BUILDER} AS build
ARG BRIDGE
RUN test -n "$BRIDGE" || (echo "build with --build-arg BRIDGE=<discord|telegram|whatsapp|wechat>" && exit 1)
WORKDIR /src
# The dependency layer: the manifests, build scripts and what they read, with empty sources.
COPY Cargo.toml Cargo.lock ./
COPY crates/bridge-core/Cargo.toml crates/bridge-core/
COPY crates/discord/Cargo.toml crates/discord/
COPY crates/telegram/Cargo.toml crates/telegram/
COPY crates/whatsapp/Cargo.toml crates/whatsapp/build.rs crates/whatsapp/
COPY crates/whatsapp/src/build_guard.rs crates/whatsapp/src/
COPY crates/wechat/Cargo.toml crates/wechat/build.rs crates/wechat/
COPY crates/wechat/proto crates/wechat/proto
RUN for crate in bridge-core discord telegram whatsapp wechat; do \
        echo > "crates/$crate/src/lib.rs"; \
        [ "$crate" = bridge-core ] || echo 'fn main() {}' > "crates/$crate/src/main.rs"; \
    done \
    && sed -i 's/, "tests"//' Cargo.toml \
    && cargo build --release -p "bridge-$BRIDGE" \
    && rm crates/*/src/lib.rs crates/*/src/main.rs
COPY . .
# COPY keeps the files' old times: make cargo see the real sources as newer than the stubs.
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p "bridge-$BRIDGE" \
    && cp "target/release/bridge-$BRIDGE" /usr/local/bin/bridge

FROM runtime
COPY --from=build /usr/local/bin/bridge /usr/local/bin/bridge
