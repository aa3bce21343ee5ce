# syntax=docker/dockerfile:1
# github-token-refresher in an image holding nothing but the static binary and the CA
# certificates (FROM scratch: no shell, no libc, no package manager), running as uid 65532.
#
#   docker build -t github-token-refresher:0.1.0 .
#
# Host side, the daemon in a container (the key and the token directory mounted from the
# host; the token directory is the one your sandboxes mount read-only):
#   docker run -d --name github-token-refresher --user "$(id -u):$(id -g)" \
#     -v "$HOME/.config/github-token-refresher/app.pem:/key/app.pem:ro" \
#     -v "$XDG_RUNTIME_DIR/github-token-refresher:/run/github-token" \
#     -e GITHUB_APP_ID=123456 -e GITHUB_APP_OWNER=acme \
#     -e GITHUB_APP_PRIVATE_KEY_FILE=/key/app.pem \
#     -e GITHUB_TOKEN_FILE=/run/github-token/token.json \
#     github-token-refresher:0.1.0 run
#
# Into a sandbox image, take only the binary (it is static, so any base will do):
#   COPY --from=github-token-refresher:0.1.0 /usr/local/bin/github-token-refresher /usr/local/bin/
#   RUN ln -s github-token-refresher /usr/local/bin/git-credential-github-token-refresher
# See docs/consumers.md ("The container image") and deploy/kubernetes/.

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    BIN_OUT=/out/github-token-refresher scripts/build-static.sh

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/github-token-refresher /usr/local/bin/github-token-refresher
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/github-token-refresher"]
CMD ["--help"]
