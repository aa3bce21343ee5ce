#!/usr/bin/env bash
# Lint the user units in this directory (run by CI; any user, root included):
#   1. `systemd-analyze verify --user` prints nothing at all. It exits 0 on unknown keys and
#      misspelt sections, so any output counts as a failure.
#   2. `systemd-analyze security --user --offline=true` exposure <= 2.5 for each unit.
#   3. The template and the plain unit differ only where they name the instance.
#   4. no-user-namespace.conf (the drop-in setup.sh installs where user namespaces are not
#      available) verifies cleanly on top of each unit; its exposure is printed, not enforced.
#   5. config-file.conf (the drop-in of `setup.sh --config`) verifies cleanly on top of the
#      plain unit, keeps its exposure <= 2.5, and unsets every single-target environment
#      variable that src/cli.rs defines (any one of them makes `run --config` exit 78).
#   6. examples/github-token-refresher-pull.socket with examples/socket-activated.conf on
#      the plain unit (pull mode's socket activation) verifies cleanly, exposure <= 2.5.
# Needs systemd-analyze (systemd >= 250). Exits non-zero, saying why, on any failure.
set -euo pipefail

threshold=${EXPOSURE_THRESHOLD:-2.5}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
units=("$here/github-token-refresher.service" "$here/github-token-refresher@.service")

failures=0
fail() { echo "lint: FAIL $*" >&2; failures=$((failures + 1)); }
ok() { echo "lint: ok   $*"; }

command -v systemd-analyze >/dev/null || { echo "lint: systemd-analyze not found (apt-get install systemd)" >&2; exit 2; }
for unit in "${units[@]}"; do
  [[ -f $unit ]] || { echo "lint: missing $unit" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `--user` wants a runtime directory (%t); CI often has none, root never has one.
if [[ -z ${XDG_RUNTIME_DIR:-} || ! -d ${XDG_RUNTIME_DIR:-/nonexistent} ]]; then
  export XDG_RUNTIME_DIR=$work/runtime
  mkdir -m 0700 "$XDG_RUNTIME_DIR"
fi
# verify checks that ExecStart= is executable; give it a home (%h) with a stand-in binary so
# the result does not depend on whether this machine has the daemon installed.
home=$work/home
mkdir -p "$home/.local/bin" "$home/.config/github-token-refresher"
printf '#!/bin/sh\nexit 0\n' >"$home/.local/bin/github-token-refresher"
chmod 0755 "$home/.local/bin/github-token-refresher"

for unit in "${units[@]}"; do
  name=$(basename "$unit")
  # The template is checked as itself (systemd instantiates it as "i") and as a named
  # instance, which is how users run it.
  targets=("$unit")
  [[ $name == *@.service ]] && targets+=("$unit:${name%@.service}@lint.service")
  for target in "${targets[@]}"; do
    rc=0
    out=$(cd "$work" && HOME=$home systemd-analyze verify --user "$target" 2>&1) || rc=$?
    if [[ $rc -ne 0 || -n $out ]]; then
      fail "systemd-analyze verify --user $target (exit $rc):"
      printf '%s\n' "$out" | sed 's/^/    /' >&2
    else
      ok "verify ${target##*/}"
    fi
  done

  rc=0
  out=$(cd "$work" && HOME=$home systemd-analyze security --user --offline=true "$unit" 2>&1) || rc=$?
  exposure=$(printf '%s\n' "$out" | sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  if [[ $rc -ne 0 || -z $exposure ]]; then
    fail "systemd-analyze security --user --offline=true $name (exit $rc), no exposure level in:"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  elif awk -v e="$exposure" -v t="$threshold" 'BEGIN { exit !(e > t) }'; then
    fail "$name: exposure $exposure is above $threshold; what is still open:"
    printf '%s\n' "$out" | grep '✗' | sed 's/^/    /' >&2
  else
    ok "security $name: exposure $exposure (<= $threshold)"
  fi
done

# The fallback drop-in, on top of each unit.
dropin=$here/no-user-namespace.conf
for unit in "${units[@]}"; do
  name=$(basename "$unit")
  dir=$work/dropin-${name%.service}
  mkdir -p "$dir/$name.d"
  cp "$unit" "$dir/$name"
  cp "$dropin" "$dir/$name.d/setup-no-user-namespace.conf"
  rc=0
  out=$(cd "$work" && HOME=$home systemd-analyze verify --user "$dir/$name" 2>&1) || rc=$?
  if [[ $rc -ne 0 || -n $out ]]; then
    fail "systemd-analyze verify --user $name + $(basename "$dropin") (exit $rc):"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  else
    exposure=$(cd "$work" && HOME=$home systemd-analyze security --user --offline=true "$dir/$name" 2>&1 |
      sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    ok "verify $name + $(basename "$dropin") (reduced profile, exposure ${exposure:-unknown}; not enforced)"
  fi
done

# The drop-in for a targets file, on top of the plain unit.
config=$here/config-file.conf
name=$(basename "${units[0]}")
dir=$work/config-${name%.service}
mkdir -p "$dir/$name.d"
cp "${units[0]}" "$dir/$name"
cp "$config" "$dir/$name.d/setup-config-file.conf"
rc=0
out=$(cd "$work" && HOME=$home systemd-analyze verify --user "$dir/$name" 2>&1) || rc=$?
if [[ $rc -ne 0 || -n $out ]]; then
  fail "systemd-analyze verify --user $name + $(basename "$config") (exit $rc):"
  printf '%s\n' "$out" | sed 's/^/    /' >&2
else
  ok "verify $name + $(basename "$config")"
fi
exposure=$(cd "$work" && HOME=$home systemd-analyze security --user --offline=true "$dir/$name" 2>&1 |
  sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
if [[ -z $exposure ]] || awk -v e="$exposure" -v t="$threshold" 'BEGIN { exit !(e > t) }'; then
  fail "$name + $(basename "$config"): exposure ${exposure:-unknown} is above $threshold"
else
  ok "security $name + $(basename "$config"): exposure $exposure (<= $threshold)"
fi
# The one definition of the settings; `cargo test` checks the same list exactly
# (config::settings::tests), this keeps the lint meaningful without a build.
cli=$here/../src/config/settings.rs
if [[ -f $cli ]]; then
  want=$(grep -o '"GITHUB_[A-Z_]*"' "$cli" | cut -d'"' -f2 | grep -vx GITHUB_TOKEN_REFRESHER_CONFIG | sort -u)
  have=$(sed -n 's/^UnsetEnvironment=//p' "$config" | tr ' ' '\n' | sed '/^$/d' | sort -u)
  if [[ $want == "$have" ]]; then
    ok "$(basename "$config") unsets all $(wc -l <<<"$want") variables of src/config/settings.rs"
  else
    fail "$(basename "$config")'s UnsetEnvironment= differs from the variables in src/config/settings.rs (< settings.rs, > drop-in):"
    diff <(echo "$want") <(echo "$have") | grep '^[<>]' | sed 's/^/    /' >&2
  fi
else
  echo "lint: skip the variable list of $(basename "$config"): no $cli"
fi

# Pull mode's socket activation (systemd/examples/): the .socket unit, and the plain unit
# with the drop-in that makes it serve that socket, verified together (verify checks that
# the socket's Service= loads), the unit's exposure kept <= 2.5.
examples=$here/examples
dir=$work/socket
name=$(basename "${units[0]}")
mkdir -p "$dir/$name.d"
cp "${units[0]}" "$examples/github-token-refresher-pull.socket" "$dir/"
cp "$examples/socket-activated.conf" "$dir/$name.d/"
rc=0
out=$(cd "$work" && HOME=$home systemd-analyze verify --user "$dir/github-token-refresher-pull.socket" "$dir/$name" 2>&1) || rc=$?
if [[ $rc -ne 0 || -n $out ]]; then
  fail "systemd-analyze verify --user github-token-refresher-pull.socket + $name + socket-activated.conf (exit $rc):"
  printf '%s\n' "$out" | sed 's/^/    /' >&2
else
  ok "verify github-token-refresher-pull.socket + $name + socket-activated.conf"
fi
exposure=$(cd "$work" && HOME=$home systemd-analyze security --user --offline=true "$dir/$name" 2>&1 |
  sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
if [[ -z $exposure ]] || awk -v e="$exposure" -v t="$threshold" 'BEGIN { exit !(e > t) }'; then
  fail "$name + socket-activated.conf: exposure ${exposure:-unknown} is above $threshold"
else
  ok "security $name + socket-activated.conf: exposure $exposure (<= $threshold)"
fi

# The template is the plain unit with the instance name in five places. Compare the two
# with comments dropped and the instance-specific values mapped back.
normalise() { grep -v '^#' "$1" | grep -v '^$'; }
if diff -u <(normalise "${units[0]}") <(normalise "${units[1]}" | sed \
  -e 's/^Description=\(.*\) (%i)$/Description=\1/' \
  -e 's|%t/github-token-refresher@%i/|%t/github-token-refresher/|' \
  -e 's|/github-token-refresher/%i\.env$|/github-token-refresher/env|' \
  -e 's|/github-token-refresher/%i\.pem$|/github-token-refresher/github-app.pem|' \
  -e 's|^RuntimeDirectory=github-token-refresher@%i$|RuntimeDirectory=github-token-refresher|') >"$work/diff"; then
  ok "template matches the plain unit apart from the instance name"
else
  fail "github-token-refresher@.service has drifted from github-token-refresher.service:"
  sed 's/^/    /' "$work/diff" >&2
fi

if ((failures)); then
  echo "lint: $failures check(s) failed" >&2
  exit 1
fi
echo "lint: all checks passed"
