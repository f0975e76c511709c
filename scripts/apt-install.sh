#!/usr/bin/env bash
# Installs a Debian package for a program some tests drive (called by
# scripts/prereq-*.sh):
#
#   scripts/apt-install.sh WHO PACKAGE [ALTERNATIVE...]
#
# Tries PACKAGE, then each ALTERNATIVE, as root directly, else with `sudo -n`
# when that needs no password. Waits for another install's lock instead of
# failing on it, and refreshes the package lists only when they do not know
# PACKAGE. When it cannot install (no apt-get, no root, the install failed),
# it says why in one line prefixed with WHO and exits 1.
set -euo pipefail

who="$1"
shift
say() { echo "$who: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    say "there is no apt-get here to install $1"
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say "installing $1 needs root (not root, no password-less sudo): apt-get install $1"
    exit 1
fi

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
say "installing $1 (apt-get)"
if ! apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${apt[@]}" update -qq
fi
for package in "$@"; do
    if "${apt[@]}" install -y -qq --no-install-recommends "$package" >/dev/null; then
        exit 0
    fi
done
say "apt-get install $* failed"
exit 1
