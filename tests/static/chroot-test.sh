#!/usr/bin/env bash
# Prove the static build: run `once` and the consumer commands in an empty chroot that holds
# nothing but the binary, the CA bundle and the App key, against the fake GitHub on
# loopback (over plain http, and over https through a TLS proxy whose test CA is in the
# chroot's bundle, and then is not).
#
#   tests/static/chroot-test.sh                      # builds with scripts/build-static.sh
#   BIN=path/to/static/binary tests/static/chroot-test.sh
#   FAKE=path/to/fake-github  tests/static/chroot-test.sh
#
# Needs root (chroot; the binary then runs as uid 65532 like in the Dockerfile) or, failing
# that, unprivileged user namespaces (`unshare --map-root-user`). Also: python3 (the TLS
# proxy), openssl (the test CA), readelf. Prints PASS/FAIL lines and `N passed, M failed`;
# exits 1 if anything failed.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
pass=0
fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { # check DESCRIPTION COMMAND...: PASS if the command succeeds
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- the binaries ------------------------------------------------------------------------
bin=${BIN:-}
if [ -z "$bin" ]; then
    bin=$("$root/scripts/build-static.sh" | tail -n 1) || { bad "static build"; finish; }
fi
fake=${FAKE:-}
if [ -z "$fake" ]; then
    (cd "$root" && cargo build -q -p fake-github) || { bad "build fake-github"; finish; }
    fake=${CARGO_TARGET_DIR:-$root/target}/debug/fake-github
fi

if ! readelf -l "$bin" | grep -q INTERP && ! readelf -d "$bin" | grep -q '(NEEDED)'; then
    ok "binary is statically linked (no interpreter, no NEEDED libraries)"
else
    bad "binary is statically linked"
    readelf -d "$bin" | grep '(NEEDED)'
fi

ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca_bundle" ] || { bad "host CA bundle $ca_bundle exists"; finish; }

# --- the chroot: the binary, the CA bundle, the key. Nothing else. -----------------------
jail=$work/jail
mkdir -p "$jail/etc/ssl/certs" "$jail/key" "$jail/tok" "$jail/tok2" "$jail/tok3" "$jail/tok4"
cp "$bin" "$jail/github-token-refresher"
# the name git looks for (credential.helper = github-token-refresher …)
ln "$jail/github-token-refresher" "$jail/git-credential-github-token-refresher"
cp "$ca_bundle" "$jail/etc/ssl/certs/ca-certificates.crt"
chmod 0755 "$jail" "$jail/github-token-refresher"

if [ "$(id -u)" = 0 ]; then
    uid=65532
    chroot_cmd=("$(command -v chroot)" --userspec="$uid:$uid" "$jail")
else
    # root only inside a user namespace; files appear owned by that root
    uid=0
    chroot_cmd=("$(command -v unshare)" --map-root-user "$(command -v chroot)" "$jail")
fi
if [ "$uid" != 0 ]; then
    chown -R $uid:$uid "$jail/key" "$jail/tok" "$jail/tok2" "$jail/tok3" "$jail/tok4"
fi
chmod 0700 "$jail/key" "$jail/tok" "$jail/tok2" "$jail/tok3" "$jail/tok4"

# jail CMD...: run the binary in the chroot with an empty environment
jail() { env -i "${chroot_cmd[@]}" /github-token-refresher "$@"; }

# --- the fake GitHub -------------------------------------------------------------------
"$fake" --key-out "$work/fake" --token-lifetime 120s --port-file "$work/fake-url" \
    >"$work/fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/fake-url" ] && break; sleep 0.1; done
[ -s "$work/fake-url" ] || { bad "fake-github starts"; cat "$work/fake.log"; finish; }
api=$(cat "$work/fake-url")
hostport=${api#http://}
install -m 0600 "$work/fake/app.pem" "$jail/key/app.pem"
[ "$uid" != 0 ] && chown $uid:$uid "$jail/key/app.pem"

echo "chroot contents:"
(cd "$jail" && find . -mindepth 1 | sort | sed 's/^/    /')

once_flags=(--app-id 1234 --private-key-file /key/app.pem --installation-id 100)
token_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$1"; }
expiry_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["expires_at_unix"])' "$1"; }
all_stderr=$work/all-stderr
: >"$all_stderr"

# --- once, over http -------------------------------------------------------------------
if jail once "${once_flags[@]}" --api-url "$api" --output /tok/token.json \
    >"$work/once.out" 2>"$work/once.err"; then
    ok "once (http) in the chroot writes /tok/token.json"
else
    bad "once (http) in the chroot (exit $?)"
    cat "$work/once.err"
    finish
fi
cat "$work/once.err" >>"$all_stderr"
tokfile=$jail/tok/token.json
token=$(token_of "$tokfile")
mode=$(stat -c %a "$tokfile")
check "token file is mode 600 (got $mode)" [ "$mode" = 600 ]
check "token file holds a token" [ -n "$token" ]

# --- the key as a Kubernetes Secret volume with fsGroup presents it (deploy/kubernetes) ------
# root-owned, group = fsGroup, mode 0440 whatever defaultMode says (kubernetes#57923), and
# reached through the kubelet's ..data symlinks
if [ "$uid" != 0 ]; then
    mkdir -p "$jail/k8s-secret/..2026_01_01_00_00_00.000000001" "$jail/tok5"
    install -m 0440 -o 0 -g $uid "$work/fake/app.pem" \
        "$jail/k8s-secret/..2026_01_01_00_00_00.000000001/app.pem"
    ln -s ..2026_01_01_00_00_00.000000001 "$jail/k8s-secret/..data"
    ln -s ..data/app.pem "$jail/k8s-secret/app.pem"
    chown $uid:$uid "$jail/tok5"
    chmod 0700 "$jail/tok5"
    jail once --app-id 1234 --private-key-file /k8s-secret/app.pem --installation-id 100 \
        --api-url "$api" --output /tok5/token.json >/dev/null 2>"$work/k8s-key.err"
    rc=$?
    cat "$work/k8s-key.err" >>"$all_stderr"
    check "once accepts a key laid out like a Kubernetes Secret with fsGroup (root:$uid 0440, exit $rc)" \
        [ "$rc" = 0 ]
    [ "$rc" = 0 ] || sed 's/^/    /' "$work/k8s-key.err"
    rm -rf "$jail/k8s-secret" "$jail/tok5"
else
    echo "SKIP: the Kubernetes Secret key layout (needs root to chown the key to root:65532)"
fi

jail status --output /tok/token.json --min-remaining 1m >"$work/status.out" 2>>"$all_stderr"
check "status in the chroot: valid (exit 0)" [ $? = 0 ]

# --- token -----------------------------------------------------------------------------
out=$(jail token --file /tok/token.json --min-remaining 1m 2>>"$all_stderr")
check "token prints the token in the file" [ "$out" = "$token" ]

out=$(jail token --file /tok/token.json 2>"$work/refuse.err")
rc=$?
cat "$work/refuse.err" >>"$all_stderr"
check "token refuses a 120s token under the default --min-remaining 10m (exit $rc)" \
    [ "$rc" = 1 -a -z "$out" ]
check "  and says why" grep -q 'less than --min-remaining' "$work/refuse.err"

# --- git-credential --------------------------------------------------------------------
expected=$(printf 'username=x-access-token\npassword=%s\npassword_expiry_utc=%s' \
    "$token" "$(expiry_of "$tokfile")")
out=$(printf 'protocol=https\nhost=%s\n\n' "$hostport" |
    jail git-credential --file /tok/token.json get 2>>"$all_stderr")
check "git-credential get answers for the API's host" [ "$out" = "$expected" ]

out=$(printf 'protocol=https\nhost=github.com\n\n' |
    jail git-credential --file /tok/token.json get 2>>"$all_stderr")
check "git-credential get gives nothing for another host" [ -z "$out" ]

out=$(printf 'protocol=https\nhost=%s\n\n' "$hostport" |
    env -i "${chroot_cmd[@]}" /git-credential-github-token-refresher --file /tok/token.json get \
        2>>"$all_stderr")
check "invoked as git-credential-github-token-refresher" [ "$out" = "$expected" ]

# --- token --wait: inotify in the static binary ------------------------------------------
jail token --wait 30s --file /tok2/token.json --min-remaining 1m \
    >"$work/wait.out" 2>"$work/wait.err" &
waiter=$!
pids+=("$waiter")
sleep 1
jail once "${once_flags[@]}" --api-url "$api" --output /tok2/token.json \
    >/dev/null 2>>"$all_stderr"
started=$(date +%s)
wait "$waiter"
rc=$?
cat "$work/wait.err" >>"$all_stderr"
waited=$(($(date +%s) - started))
check "token --wait returns the token published after it started (exit $rc, ${waited}s)" \
    [ "$rc" = 0 -a "$(cat "$work/wait.out")" = "$(token_of "$jail/tok2/token.json")" -a "$waited" -le 2 ]

# --- https: rustls + aws-lc + the chroot's CA bundle ---------------------------------------
pki=$work/pki
mkdir -p "$pki"
if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 1 -subj /CN=chroot-test-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$pki/srv.key" -out "$pki/srv.csr" -subj /CN=127.0.0.1 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
        >"$pki/ext" &&
    openssl x509 -req -in "$pki/srv.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
        -CAcreateserial -out "$pki/srv.pem" -days 1 -extfile "$pki/ext" 2>/dev/null; then
    python3 "$root/tests/static/tls-proxy.py" "$pki/srv.pem" "$pki/srv.key" "$hostport" \
        "$work/tls-port" 2>"$work/proxy.log" &
    pids+=($!)
    for _ in $(seq 50); do [ -s "$work/tls-port" ] && break; sleep 0.1; done
    tls_api=https://127.0.0.1:$(cat "$work/tls-port")

    cat "$ca_bundle" "$pki/ca.pem" >"$jail/etc/ssl/certs/ca-certificates.crt"
    jail once "${once_flags[@]}" --api-url "$tls_api" --output /tok3/token.json \
        >/dev/null 2>"$work/tls.err"
    rc=$?
    cat "$work/tls.err" >>"$all_stderr"
    check "once over https with the test CA in the chroot's bundle (exit $rc)" \
        [ "$rc" = 0 -a -s "$jail/tok3/token.json" ]

    cp "$ca_bundle" "$jail/etc/ssl/certs/ca-certificates.crt"
    jail once "${once_flags[@]}" --api-url "$tls_api" --output /tok4/token.json \
        >/dev/null 2>"$work/notls.err"
    rc=$?
    cat "$work/notls.err" >>"$all_stderr"
    check "once over https fails without the test CA in the bundle (exit $rc)" \
        [ "$rc" != 0 -a ! -e "$jail/tok4/token.json" ]
    check "  with a certificate error" grep -qi 'certificate\|UnknownIssuer' "$work/notls.err"
    sed 's/^/    /' "$work/notls.err" | tail -n 2
else
    bad "create a test CA with openssl"
fi

# --- no secret on stderr -----------------------------------------------------------------
leaked=0
for t in "$token" "$(token_of "$jail/tok2/token.json")"; do
    grep -qF "$t" "$all_stderr" && leaked=1
done
check "no command wrote a token to stderr" [ "$leaked" = 0 ]

finish
