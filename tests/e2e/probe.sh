#!/bin/sh
# Runs inside a copy of the installed unit (same sandboxing, ExecStart replaced) and reports
# what the service could touch, one finding per line, into $RUNTIME_DIRECTORY/.e2e-probe.
out=$RUNTIME_DIRECTORY/.e2e-probe
: >"$out.tmp"
[ -n "$HOME" ] && [ -n "$XDG_RUNTIME_DIR" ] || echo "HOME or XDG_RUNTIME_DIR unset" >>"$out.tmp"
# Every directory the service can create a file in, except its own token directory.
find / \( -path /proc -o -path /sys -o -path "$RUNTIME_DIRECTORY" \) -prune -o -type d -print 2>/dev/null |
  while read -r d; do
    if touch "$d/.e2e-probe-w" 2>/dev/null; then
      echo "writable $d" >>"$out.tmp"
      rm -f "$d/.e2e-probe-w"
    fi
  done
touch "$RUNTIME_DIRECTORY/.e2e-probe-w" 2>/dev/null && echo "token-dir-writable" >>"$out.tmp"
rm -f "$RUNTIME_DIRECTORY/.e2e-probe-w"
if [ -z "${GITHUB_TOKEN_REFRESHER_CONFIG:-}" ]; then
  [ -e "$HOME/.config" ] && echo "sees $HOME/.config" >>"$out.tmp"
else
  # with a targets file (setup.sh --config): of ~/.config, that file alone, read-only
  find "$HOME/.config" ! -type d ! -path "$GITHUB_TOKEN_REFRESHER_CONFIG" 2>/dev/null | sed 's/^/sees /' >>"$out.tmp"
  [ -r "$GITHUB_TOKEN_REFRESHER_CONFIG" ] && echo "targets-readable" >>"$out.tmp"
  [ -w "$GITHUB_TOKEN_REFRESHER_CONFIG" ] && echo "targets-writable" >>"$out.tmp"
fi
[ -e "$HOME/.ssh" ] && echo "sees $HOME/.ssh" >>"$out.tmp"
[ -S "$XDG_RUNTIME_DIR/bus" ] && echo "sees the user bus $XDG_RUNTIME_DIR/bus" >>"$out.tmp"
[ -S "$XDG_RUNTIME_DIR/systemd/private" ] && echo "sees the user manager's private socket" >>"$out.tmp"
[ -r "$CREDENTIALS_DIRECTORY/github-app.pem" ] && echo "credential-readable" >>"$out.tmp"
grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/self/status || echo "has capabilities" >>"$out.tmp"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || echo "may gain privileges" >>"$out.tmp"
grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status || echo "no seccomp filter" >>"$out.tmp"
mv "$out.tmp" "$out"
