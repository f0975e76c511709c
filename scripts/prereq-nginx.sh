#!/usr/bin/env bash
# Installs nginx when it is missing, for the cluster test (tests/api/cluster/),
# which puts nginx in front of several pgherald instances. Debian's
# nginx-light is enough (the proxy and upstream modules); plain nginx where
# that package does not exist. As root directly, otherwise with `sudo -n`
# when that works without a password; otherwise it says why not and exits 0
# (the cluster test then prints the same reason and skips).
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "prereq-nginx: nginx is missing and there is no apt-get here; install nginx to run the cluster test" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "prereq-nginx: nginx is missing, and installing it needs root (not root, no password-less sudo); install nginx to run the cluster test" >&2
    exit 0
fi

echo "prereq-nginx: installing nginx" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends nginx >/dev/null
# The package starts a system nginx on port 80 where an init system runs it;
# the tests run their own, so leave the machine as it was otherwise.
if command -v service >/dev/null 2>&1; then
    "${as_root[@]}" service nginx stop >/dev/null 2>&1 || true
fi
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
