# The service image: a statically linked netsec and nothing else (no shell, no libc).
# `cargo xtask image` builds it through the Docker Engine API; a plain `docker build .` works
# after `cargo xtask image --binary-only`, which puts the binary and the build machine's CA
# certificates into target/image/.
FROM scratch

# The non-root user the image runs as (uid and gid 10001).
COPY image/passwd image/group /etc/
# rustls reads the system store (rustls-native-certs) for TLS endpoints such as S3.
COPY target/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY data_schema/schema.yaml image/netsec.yaml /etc/netsec/
COPY target/image/netsec /usr/local/bin/netsec

ENV NETSEC_CONFIG=/etc/netsec/netsec.yaml \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/netsec"]
CMD ["serve"]

# Last, so that a new revision or date leaves the cached layers above as they are.
ARG SOURCE=unknown
ARG REVISION=unknown
ARG VERSION=unknown
ARG CREATED=unknown
# The sha256 of the build context (the Dockerfile and the files it copies), which
# `cargo xtask deploy` compares: the same sources are the same inputs, however they were built.
ARG INPUTS=unknown
LABEL org.opencontainers.image.title="netsec" \
      org.opencontainers.image.description="Phishing-website classifier: training pipeline and HTTP service" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      netsec.inputs="${INPUTS}"
