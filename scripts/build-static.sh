#!/bin/sh
# Build a statically linked github-token-refresher for containers (FROM scratch, distroless,
# an init container), and check that it really is static.
#
#   scripts/build-static.sh            # prints target/x86_64-unknown-linux-gnu/release/github-token-refresher
#   BIN_OUT=dist/github-token-refresher scripts/build-static.sh   # also copy it there
#
# How: glibc's static libc with `-C target-feature=+crt-static` on the host's gnu target
# (this machine's one toolchain; no musl target needed, and glibc's own libc.a ships with
# libc6-dev). `--target` is required: with it,
# RUSTFLAGS apply only to the binary, not to build scripts and proc-macros, which must stay
# dynamic. aws-lc-sys (rustls's and jsonwebtoken's crypto) builds its C code with the same
# cc and links into the static binary without changes.
#
# What static glibc means at run time, all checked by tests/static/chroot-test.sh in an
# empty chroot:
#   - name resolution: glibc >= 2.34 has the `files` and `dns` NSS modules built in, so
#     /etc/hosts and /etc/resolv.conf (which Docker and Kubernetes inject) work with no
#     shared libraries. Other NSS sources in an nsswitch.conf (ldap, mdns, …) would need
#     dlopen and do not work; nothing here needs them.
#   - randomness: from the getrandom() system call, not /dev/urandom (see below), so no /dev
#     is needed.
#   - TLS roots: read at run time from /etc/ssl/certs/ca-certificates.crt (or SSL_CERT_FILE),
#     so the image must carry a CA bundle.
set -eu

cd "$(dirname "$0")/.."
# the host's own gnu target (x86_64-unknown-linux-gnu here; aarch64 on an arm64 builder)
target=$(rustc -vV | sed -n 's/^host: //p')
case $target in
*-linux-gnu) ;;
*) echo "build-static: host target $target is not *-linux-gnu" >&2; exit 1 ;;
esac
bin_name=github-token-refresher
target_dir=${CARGO_TARGET_DIR:-target}

# getrandom 0.3 (under rand) finds glibc's getrandom() with dlsym, which finds nothing in
# a static binary, and then falls back to opening /dev/urandom: in an empty chroot or a
# sandbox without /dev that panics ("could not initialize ThreadRng"). Its
# linux_getrandom backend calls getrandom() directly (glibc >= 2.25, Linux >= 3.17).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --release --target "$target" --bin "$bin_name"

bin=$target_dir/$target/release/$bin_name

# static: no program interpreter and no shared-library dependencies
if readelf -l "$bin" | grep -q 'INTERP'; then
    echo "build-static: $bin has a program interpreter: not static" >&2
    exit 1
fi
if readelf -d "$bin" | grep -q '(NEEDED)'; then
    echo "build-static: $bin needs shared libraries:" >&2
    readelf -d "$bin" | grep '(NEEDED)' >&2
    exit 1
fi

if [ -n "${BIN_OUT:-}" ]; then
    mkdir -p "$(dirname "$BIN_OUT")"
    cp "$bin" "$BIN_OUT"
    bin=$BIN_OUT
fi
echo "$bin"
