# leadmail container: a multi-stage build, a slim runtime, a non-root user.
#   docker build -t leadmail .
#   docker run --rm -v leadmail-data:/var/lib/leadmail \
#       -v /etc/leadmail/leadmail.toml:/etc/leadmail/leadmail.toml:ro leadmail check-config

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/leadmail --shell /usr/sbin/nologin leadmail \
    && install -d -o leadmail -g leadmail -m 0700 /var/lib/leadmail \
    && install -d -m 0755 /etc/leadmail
COPY --from=build /src/target/release/leadmail /usr/local/bin/leadmail
# A starting point; mount your own over it.
COPY config/leadmail.toml /etc/leadmail/leadmail.toml
ENV LEADMAIL_CONFIG=/etc/leadmail/leadmail.toml \
    LEADMAIL__DATABASE__URL=sqlite:///var/lib/leadmail/leadmail.db
VOLUME /var/lib/leadmail
WORKDIR /var/lib/leadmail
USER leadmail
ENTRYPOINT ["/usr/local/bin/leadmail"]
CMD ["run"]
