#!/usr/bin/env bash
# Chromium for the browser test (tests/api/browser.rs drives the demo page
# with playwright-core and the system's Chromium). Installs Debian's
# `chromium` package when /usr/bin/chromium is missing: as root directly,
# else with `sudo -n` when that needs no password. When neither is possible
# (or there is no apt-get), it says why and exits 0: the browser test then
# prints the reason and skips. Run by scripts/test.sh (`make test`).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

say() { echo "prereq-chromium: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    say "$CHROMIUM is missing and there is no apt-get to install it; the browser test will skip"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say "$CHROMIUM is missing; not root and no password-less sudo, so it is not installed" \
        "(install it with: apt-get install chromium); the browser test will skip"
    exit 0
fi

# Wait for another package install (another prereq, unattended upgrades)
# rather than fail on the package manager's lock.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
say "installing Debian's chromium (apt-get)"
# Only refresh the package lists when they do not know the package yet.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${apt[@]}" update
fi
if ! "${apt[@]}" install -y --no-install-recommends chromium; then
    say "apt-get install chromium failed; the browser test will skip"
    exit 0
fi
[ -x "$CHROMIUM" ] || say "chromium installed, but $CHROMIUM is still missing; the browser test will skip"
exit 0
