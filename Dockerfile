# Multi-stage build of every chat binary; the runtime image holds only the binaries.
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p bootstrap --bins

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data chat \
    && mkdir -p /data && chown chat /data
COPY --from=build /src/target/release/chat /src/target/release/chat-api /src/target/release/chat-file \
     /src/target/release/chat-socket /src/target/release/chat-worker /usr/local/bin/
USER chat
ENV CHAT_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
CMD ["chat"]
