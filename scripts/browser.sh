#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the dashboard's browser test
# (tests/integration/test_dashboard.py), if they are missing; quiet when they are there.
# Called by `make install`. Needs root (or sudo) and apt-get; elsewhere it says what to install.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "browser.sh: install chromium and its chromedriver (the dashboard's browser test needs them)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "browser.sh: installing chromium and chromium-driver (Debian packages) for the dashboard's browser test"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
