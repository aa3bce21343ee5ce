#!/bin/sh
# Validate the example manifests offline against the Kubernetes OpenAPI schemas shipped in
# the PyPI package kubernetes-validate (no cluster, no network once it is installed).
#
#   deploy/kubernetes/validate.sh            # against kubernetes-validate's default version
#   K8S_VERSION=1.29.0 deploy/kubernetes/validate.sh
#
# Installs kubernetes-validate with pip when it is missing. --strict rejects unknown fields
# (a misspelt readOnlyRootFileSystem would otherwise pass silently).
set -eu
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install --quiet kubernetes-validate
fi

status=0
# 1.29: the oldest release with native sidecars (an init container with restartPolicy: Always)
for version in ${K8S_VERSION:-1.29.0 default}; do
    echo "== Kubernetes $version"
    if [ "$version" = default ]; then set --; else set -- -k "$version"; fi
    kubernetes-validate --strict "$@" "$here"/pod.yaml "$here"/secret.example.yaml || status=1
done
exit $status
