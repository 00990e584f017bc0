#!/bin/sh
# Install Debian's `chromium` (used by tests/test_report_browser.py) when it is missing.
# Idempotent and quiet: prints one line only when it installs something. Needs root or sudo.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! sudo -n true 2>/dev/null; then
        echo "chromium missing and no root/sudo: the browser test of the HTML report will be skipped" >&2
        exit 0
    fi
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed $(chromium --version 2>/dev/null || echo chromium)"
