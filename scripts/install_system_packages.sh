#!/usr/bin/env bash
# Installs the Debian packages the plugin needs, if missing:
#   libsndfile1  - loaded by fairseq2n at import time
#   espeak-ng    - synthesises speech for the offline quickstart and tests
#   sox          - resamples the synthesised speech to 16 kHz
#   chromium, chromium-driver - headless browser + /usr/bin/chromedriver for the
#                  demo page's Selenium test (tests/test_demo_browser.py)
set -euo pipefail

packages=(libsndfile1 espeak-ng sox chromium chromium-driver)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "Installing system packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
