#!/usr/bin/env bash
# Installs kubernetes-validate (PyPI; it bundles the Kubernetes JSON schemas,
# so validating needs no cluster and no network) into .venv-k8s/ of the
# repository (gitignored), for the manifest test (tests/api/deploy/manifests.rs),
# which validates deploy/k8s/ with it. Does nothing when it is there already.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv-k8s"
VERSION="1.37.0"

if [ -x "$VENV/bin/kubernetes-validate" ] &&
    "$VENV/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $VERSION"; then
    exit 0
fi
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
    echo "prereq-k8s-validate: python3 is missing; the manifest test needs it for kubernetes-validate" >&2
    exit 1
fi
echo "prereq-k8s-validate: installing kubernetes-validate $VERSION into .venv-k8s" >&2
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION"
