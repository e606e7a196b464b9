#!/usr/bin/env bash
# Create .venv with Python 3.12 and install itmstream with the given extras (e.g. "dev,train").
# Idempotent: re-installs only when pyproject.toml changed or the extras differ. Also installs the
# Debian packages the tests need (ffmpeg for ffprobe) when asked with --apt.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
want_apt="${2:-}"

find_python() {
    local candidate
    for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "bootstrap: Python 3.12 not found (PyAV 19 needs it); install it or set PATH" >&2
    return 1
}

# ffprobe verifies HDR10 output; chromium runs the browser-demo test (Playwright drives it, nothing downloaded).
if [[ "$want_apt" == "--apt" ]] && { ! command -v ffprobe >/dev/null 2>&1 || [[ ! -x /usr/bin/chromium ]]; }; then
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ffmpeg chromium >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    "$(find_python)" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi

stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras//,/_}"
if [[ ! -f "$stamp" ]]; then
    spec="."
    [[ -n "$extras" ]] && spec=".[$extras]"
    .venv/bin/python -m pip install -q -e "$spec"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
