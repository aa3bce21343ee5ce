# shellcheck shell=bash
# shellcheck disable=SC2034 # the constants are for the suites that source this file
# The harness every end-to-end suite shares: sourced, never run. It boots
# ../shared/systemd-sandbox/sandbox (Debian, systemd as PID 1, user "dev", loopback only) with
# this repository at /src and a snapshot of the two binaries at /opt/e2e/bin, counts checks,
# and always powers the sandbox off at the end, keeping the user journal in the logs.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   e2e_init NAME              # checks root, sandbox and binaries; snapshots them; traps EXIT
#   e2e_boot                   # sandbox up; from here on a failing command is a failing check
#   e2e_start_fake             # the fake GitHub on $API as dev, its key at $KEY
#   expect "what is proved" CMD...
#   e2e_summary                # "N passed, M failed"; exit status 1 on any failure
#
# Environment (for every suite):
#   GTR_BIN   the daemon binary      (default: target/debug/github-token-refresher)
#   FAKE_BIN  the fake GitHub binary (default: target/debug/fake-github)
#   SANDBOX   the sandbox script     (default: ../shared/systemd-sandbox/sandbox)
#   E2E_LOGS  directory for the logs of each step (default: a new temporary directory)
# A suite may set E2E_JOURNAL_FORMAT (journalctl -o, default short-monotonic) before e2e_init.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sandbox=${SANDBOX:-$repo/../shared/systemd-sandbox/sandbox}
gtr_bin=${GTR_BIN:-$repo/target/debug/github-token-refresher}
fake_bin=${FAKE_BIN:-$repo/target/debug/fake-github}

# --- inside the machine -----------------------------------------------------------------------
GTR=/opt/e2e/bin/github-token-refresher
FAKE=/opt/e2e/bin/fake-github
SETUP=/src/setup.sh
API=http://127.0.0.1:8080
HOME_DEV=/home/dev
RUN=/run/user/1000
UNIT=github-token-refresher
KEY=$HOME_DEV/fake-key/app.pem
USER_UNITS=$HOME_DEV/.config/systemd/user

suite=e2e
bins=""
passed=0
failed=0

die() { echo "$suite.sh: $*" >&2; exit 2; }

u() { "$sandbox" user "$@" </dev/null; }   # as dev, in a login shell, with systemctl --user
ush() { "$sandbox" user bash -c "$1" </dev/null; }
r() { "$sandbox" root "$@" </dev/null; }   # as root in the machine

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
expect() { # NAME CMD...: PASS if CMD succeeds; CMD says why on stdout when it fails
  local name=$1 _out _rc=0
  shift
  _out=$("$@" 2>&1) || _rc=$?
  if ((_rc == 0)); then
    pass "$name"
  else
    fail "$name"
    [[ -z $_out ]] || printf "%s\n" "$_out" | head -n 20 | sed "s/^/     /"
  fi
}

e2e_finish() {
  local rc=$?
  if [[ -n ${booted:-} && -z ${summarised:-} ]]; then
    fail "the suite itself stopped early (exit $rc); see above and $logs"
    echo "$passed passed, $failed failed"
    rc=1
  fi
  if [[ -n ${booted:-} ]]; then
    u journalctl --user --no-pager -o "${E2E_JOURNAL_FORMAT:-short-monotonic}" >"$logs/journal-user.log" 2>&1 || true
    "$sandbox" down >/dev/null 2>&1 || true
  fi
  [[ -z $bins ]] || rm -rf "$bins"
  echo "logs: $logs"
  exit "$rc"
}

e2e_init() { # NAME: the suite's name, for its messages and its log directory
  suite=$1
  logs=${E2E_LOGS:-$(mktemp -d "/tmp/gtr-e2e-$suite.XXXXXX")}
  mkdir -p "$logs"
  [[ $(id -u) == 0 ]] || die "needs root (the sandbox does)"
  [[ -x $sandbox ]] || die "no sandbox script at $sandbox (set SANDBOX=)"
  local b
  for b in "$gtr_bin" "$fake_bin"; do
    [[ -f $b && -x $b ]] || die "no binary $b; build first (cargo build --workspace --bins) or set GTR_BIN / FAKE_BIN"
  done
  "$sandbox" status | grep -q ': up' && die "the sandbox is already up; run: $sandbox down"
  trap e2e_finish EXIT
  # a snapshot of the binaries: a cargo build meanwhile must not swap one under the suite
  bins=$(mktemp -d /tmp/gtr-e2e-bin.XXXXXX)
  chmod 0755 "$bins"
  cp "$gtr_bin" "$bins/github-token-refresher"
  cp "$fake_bin" "$bins/fake-github"
}

e2e_boot() {
  echo "booting the sandbox (logs in $logs)"
  "$sandbox" up --bind "$repo:/src" --bind "$bins:/opt/e2e/bin" >"$logs/sandbox-up.log" 2>&1 ||
    { cat "$logs/sandbox-up.log" >&2; die "sandbox up failed"; }
  booted=1
  # From here on a failing command is a failing check, not the end of the suite.
  set +e
}

e2e_start_fake() { # the fake GitHub as dev on $API, tokens of 20 minutes, its key at $KEY
  u systemd-run --user --quiet --unit=e2e-fake-github "$FAKE" --listen 127.0.0.1:8080 \
    --token-lifetime 20m --key-out "$HOME_DEV/fake-key"
  wait_for 20 u curl -fsS "$API/_fake/stats" ||
    die "the fake GitHub did not come up: $(u journalctl --user -u e2e-fake-github -o cat --no-pager)"
  wait_for 5 u test -f "$KEY" || die "the fake GitHub wrote no key"
}

e2e_summary() {
  summarised=1
  echo "$passed passed, $failed failed"
  ((failed == 0))
}

# --- checks every suite uses ---------------------------------------------------------------------
prop() { u systemctl --user show -p "$2" --value "$1"; }
token_of() { u python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "${2:-token}"; }
wait_for() { # SECONDS CMD...: until CMD succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}
contains() { # TEXT NEEDLE
  grep -qF -- "$2" <<<"$1" || { echo "missing: $2"; printf '%s\n' "$1" | tail -n 15; return 1; }
}
absent() { # PATH...: none of them exists
  local p
  for p in "$@"; do
    ! u test -e "$p" || { echo "$p still exists"; return 1; }
  done
}
is_state() { # UNIT STATE
  local s
  s=$(prop "$1" ActiveState)
  [[ $s == "$2" ]] || { echo "$1 is $s, want $2"; u systemctl --user status "$1" --no-pager -n 10; return 1; }
}
# what a consumer holding TOKEN gets from the API: the HTTP status
api_status() { u curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $1" "$API/installation/repositories"; }
works() { # TOKEN: the API accepts it
  local s
  s=$(api_status "$1")
  [[ $s == 200 ]] || { echo "the API answered $s"; return 1; }
}
refused() { # TOKEN: the API answers 401
  local s
  s=$(api_status "$1")
  [[ $s == 401 ]] || { echo "the API answered $s, want 401"; return 1; }
}
cursor() { u journalctl --user -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }
no_token_in_journal() { # TOKEN...: none of them appears anywhere in the user journal
  local j t
  j=$(u journalctl --user --no-pager -o cat)
  for t in "$@"; do
    [[ -n $t ]] || continue
    ! grep -qF "$t" <<<"$j" || { echo "a token is in the journal"; return 1; }
  done
}
