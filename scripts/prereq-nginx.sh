#!/usr/bin/env bash
# nginx for the cluster test (tests/api/deploy/), which puts nginx in front of
# several pgherald instances. Installs Debian's nginx-light (the proxy and
# upstream modules are enough; plain nginx where that package does not exist)
# when nginx is missing; when it cannot, it says why and exits 0, and the
# cluster test prints the reason and skips. Run by scripts/test.sh.
set -euo pipefail

installed() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
installed && exit 0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
"$ROOT/scripts/apt-install.sh" prereq-nginx nginx-light nginx || exit 0
# The package starts a system nginx on port 80 where an init system runs it;
# the tests run their own, so leave the machine as it was otherwise.
if command -v service >/dev/null 2>&1; then
    service nginx stop >/dev/null 2>&1 || sudo -n service nginx stop >/dev/null 2>&1 || true
fi
installed || echo "prereq-nginx: nginx installed, but not found on PATH or in /usr/sbin" >&2
exit 0
