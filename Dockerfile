# One image per bridge: docker build --build-arg BRIDGE=discord -t bridge-discord .
# The container keeps its config, registration and SQLite database in /data.
FROM rust:1-slim-bookworm AS build
ARG BRIDGE
WORKDIR /src
COPY . .
RUN test -n "$BRIDGE" || (echo "build with --build-arg BRIDGE=<discord|telegram|whatsapp|wechat>" && exit 1)
RUN cargo build --release --locked -p "bridge-$BRIDGE" \
    && cp "target/release/bridge-$BRIDGE" /usr/local/bin/bridge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data bridge
COPY --from=build /usr/local/bin/bridge /usr/local/bin/bridge
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
USER bridge
WORKDIR /data
VOLUME /data
ENTRYPOINT ["tini", "--", "/usr/local/bin/entrypoint.sh"]
