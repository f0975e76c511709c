#!/usr/bin/env bash
# Chromium for the browser test (tests/api/browser.rs drives the demo page
# with playwright-core and the system's Chromium). Installs Debian's
# `chromium` package when /usr/bin/chromium is missing; when it cannot, it
# says why and exits 0, and the browser test prints the reason and skips.
# Run by scripts/test.sh (`make test`).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
if ! "$ROOT/scripts/apt-install.sh" prereq-chromium chromium; then
    echo "prereq-chromium: the browser test will skip" >&2
    exit 0
fi
[ -x "$CHROMIUM" ] || echo "prereq-chromium: chromium installed, but $CHROMIUM is still missing; the browser test will skip" >&2
exit 0
