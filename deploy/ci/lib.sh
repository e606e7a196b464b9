# Shared helpers of the deploy/ci/*.sh checks (sourced, not run).
# shellcheck shell=bash

# log MESSAGE...: a timestamped progress line on stderr.
log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${CHECK_NAME:-ci}" "$*" >&2; }

# die MESSAGE...: fail the check with one line.
die() { log "FAIL: $*"; exit 1; }

# apt_install PKG...: install Debian packages that are missing (quietly; idempotent).
apt_install() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "apt-get install ${missing[*]}"
    local sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# tools_venv SPEC...: make sure deploy/.venv-tools has these pip requirements; prints its bin dir.
# A separate venv keeps validators out of the project's dependencies (and out of pyproject.toml).
tools_venv() {
    local venv="$DEPLOY_DIR/.venv-tools"
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv" >&2
    fi
    local stamp
    stamp="$venv/.have-$(printf '%s\n' "$@" | sha1sum | cut -c1-12)"
    if [[ ! -f "$stamp" ]]; then
        log "pip install $*"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2 || return 1
        touch "$stamp"
    fi
    printf '%s\n' "$venv/bin"
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS [STATUS]: poll until URL answers STATUS (default 200).
wait_http() {
    local url="$1" seconds="$2" want="${3:-200}"
    python3 - "$url" "$seconds" "$want" <<'PY'
import sys, time, urllib.error, urllib.request
url, seconds, want = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + seconds
status = None
while time.monotonic() < deadline:
    try:
        status = urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = None
    if status == want:
        sys.exit(0)
    time.sleep(0.5)
sys.exit(f"{url} answered {status} instead of {want} within {seconds:g} s")
PY
}

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
export DEPLOY_DIR REPO_DIR
