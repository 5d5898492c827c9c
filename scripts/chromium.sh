#!/usr/bin/env bash
# Source this: installs Debian's chromium when missing.
# tests/test_report_browser.py renders `bptt report`'s page in headless Chromium and, in CI (CI=true),
# fails rather than skips without one. Debian's package takes about 20 s to install (apt-get update included).
if ! command -v chromium >/dev/null 2>&1; then
    as_root=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    fi
    if [ "$(id -u)" -eq 0 ] || [ ${#as_root[@]} -gt 0 ]; then
        echo "installing chromium for the report's browser test" >&2
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    else
        echo "cannot install chromium (not root, no sudo): the report's browser test will fail" >&2
    fi
fi

