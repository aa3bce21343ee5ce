#!/usr/bin/env bash
# Supply-chain checks: `cargo deny` (advisories, bans, licenses, sources; deny.toml) offline,
# against the RustSec advisory database snapshot in ../shared/advisory-db.tar.gz (this
# machine cannot fetch it; ADVISORY_DB=PATH points elsewhere). Prints the snapshot's date:
# "no advisories" means none known on that date.
set -euo pipefail
cd "$(dirname "$0")/.."

db=${ADVISORY_DB:-../shared/advisory-db.tar.gz}
command -v cargo-deny >/dev/null || {
  echo "deny: cargo-deny is not installed; run: cargo install --locked cargo-deny" >&2
  exit 1
}
[[ -r $db ]] || {
  echo "deny: no advisory database snapshot at '$db'; set ADVISORY_DB=PATH to the tarball" >&2
  exit 1
}
# deny.toml's db-path; unpacked afresh each time so a stale copy is never used.
rm -rf target/deny
mkdir -p target/deny
tar xzf "$db" -C target/deny
repo=$(echo target/deny/dbs/advisory-db-*)
[[ -d $repo/.git ]] || {
  echo "deny: '$db' does not hold dbs/advisory-db-*/ (a git repository)" >&2
  exit 1
}
# The snapshot's commit says which upstream state it holds ("... of upstream SHA (DATE)");
# the newest advisory in it is the date a "no advisories" result is good for.
subject=$(git -C "$repo" log -1 --format=%s)
snapshot=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' <<<"$subject" | tail -1 || true)
newest=$(grep -rhoE '^date = "[0-9-]+"' "$repo/crates" | sort | tail -1 | grep -oE '[0-9-]{10}' || true)
echo "deny: RustSec advisory database snapshot of ${snapshot:-$(git -C "$repo" log -1 --format=%cs)}" \
  "(newest advisory ${newest:-unknown}; $subject)"
# `cargo deny --offline` reads `cargo metadata` for every platform, so the crates that only
# other platforms build (windows-sys…) must be in the local cache too: a build never fetches
# them, and a fresh machine has none. `cargo fetch` takes them from the package registry.
cargo fetch --locked --quiet || echo "deny: cargo fetch failed; checking with the crates already cached" >&2
cargo deny --offline --locked check
echo "deny: results hold for advisories published up to ${newest:-the snapshot date}"
