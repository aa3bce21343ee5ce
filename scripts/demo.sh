#!/usr/bin/env bash
# See the refresher work without a GitHub App: start the project's fake GitHub on
# 127.0.0.1 with a throwaway key and 2-minute tokens, run the daemon with short intervals,
# and print `status` every 10 s. Ctrl-C stops both. DEMO_SECONDS=N stops after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bins
bin=target/debug/github-token-refresher
dir=$(mktemp -d)
fake_pid='' daemon_pid=''
cleanup() {
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

target/debug/fake-github --key-out "$dir" --token-lifetime 2m --port-file "$dir/url" &
fake_pid=$!
for _ in $(seq 100); do [[ -s $dir/url ]] && break; sleep 0.1; done
[[ -s $dir/url ]] || { echo "demo: the fake GitHub did not start" >&2; exit 1; }

echo "demo: token file $dir/out/token.json; refresh every 20s±5s (tokens live 2m)"
"$bin" run --app-id 1234 --private-key-file "$dir/app.pem" --installation-id 100 \
  --api-url "$(cat "$dir/url")" --output "$dir/out/token.json" \
  --refresh-interval 20s --jitter 5s --min-remaining 30s &
daemon_pid=$!

end=$((SECONDS + ${DEMO_SECONDS:-1000000}))
while ((SECONDS < end)); do
  sleep 10
  kill -0 "$daemon_pid" 2>/dev/null || { echo "demo: the daemon exited" >&2; exit 1; }
  "$bin" status --output "$dir/out/token.json" --min-remaining 30s || true
done
