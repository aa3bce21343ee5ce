#!/usr/bin/env bash
# See the refresher work without a GitHub App: build the daemon and the project's fake GitHub
# (a separate workspace member, so it is named in the build), start the fake on 127.0.0.1
# with a throwaway key and 2-minute tokens, run the daemon with 20-second refreshes in a
# private temporary directory, and print `status` every 10 s.
# Ctrl-C stops it; DEMO_SECONDS=N stops it after N seconds (CI). Every exit path kills both
# processes and removes the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=${CARGO_TARGET_DIR:-target}/debug
dir='' fake_pid='' daemon_pid=''

cleanup() {
  local status=$?
  # Cleanup must run to the end whatever fails in it: errexit here would leave the temporary
  # directory (and the key in it) or a child behind.
  set +e
  trap - EXIT INT TERM
  for pid in $daemon_pid $fake_pid; do kill "$pid" 2>/dev/null; done
  for pid in $daemon_pid $fake_pid; do wait "$pid" 2>/dev/null; done
  [[ -n $dir ]] && rm -rf -- "$dir"
  exit "$status"
}
trap cleanup EXIT
# Ctrl-C is the documented way to end the demo, so it is a success; TERM is not.
trap 'echo; echo "demo: stopped"; exit 0' INT
trap 'exit 143' TERM

# Sleep in the background so that a signal runs its trap at once, not after the sleep.
pause() {
  sleep "$1" &
  wait $! || true
}

echo "demo: building the daemon and the fake GitHub (debug build of about 175 crates: 3-7" \
  "minutes on 2 cores the first time, seconds once built)"
started=$SECONDS
cargo build --locked --bins -p github-token-refresher -p fake-github
echo "demo: built in $((SECONDS - started))s"

dir=$(mktemp -d "${TMPDIR:-/tmp}/github-token-refresher-demo.XXXXXX") # 0700: private
"$bin_dir/fake-github" --key-out "$dir" --token-lifetime 2m --port-file "$dir/url" &
fake_pid=$!
for _ in $(seq 100); do [[ -s $dir/url ]] && break; pause 0.1; done
[[ -s $dir/url ]] || {
  echo "demo: the fake GitHub did not start within 10s" >&2
  exit 1
}

out=$dir/out/token.json
echo "demo: fake GitHub at $(cat "$dir/url"); token file $out"
echo "demo: tokens live 2m; the daemon refreshes every 20s±5s; status every 10s (Ctrl-C stops)"
"$bin_dir/github-token-refresher" run --app-id 1234 --private-key-file "$dir/app.pem" \
  --installation-id 100 --api-url "$(cat "$dir/url")" --output "$out" \
  --refresh-interval 20s --jitter 5s --min-remaining 30s &
daemon_pid=$!

status() { "$bin_dir/github-token-refresher" status --output "$out" --min-remaining 30s || true; }
daemon_alive() {
  kill -0 "$daemon_pid" 2>/dev/null && return
  echo "demo: the daemon exited (see its log above)" >&2
  exit 1
}

end=$((SECONDS + ${DEMO_SECONDS:-1000000}))
for _ in $(seq 300); do [[ -s $out ]] && break; daemon_alive; pause 0.1; done
[[ -s $out ]] || {
  echo "demo: no token file after 30s" >&2
  exit 1
}
status
while ((SECONDS < end)); do
  pause "$((end - SECONDS < 10 ? end - SECONDS : 10))"
  daemon_alive
  status
done
