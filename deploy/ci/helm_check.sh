#!/usr/bin/env bash
# Lint and validate the Helm chart offline (no cluster, no helm binary).
#
#  1. helm lint --strict (Helm's Go SDK via PyPI helm-python-sdk), Kubernetes 1.30; any WARNING fails.
#  2. helm template for each value set (defaults plus an API-key Secret; single replica with a PVC and
#     API keys; no autoscaling, no ServiceMonitor and allowAnonymous; the RayCluster with and without its
#     autoscaler), each piped into
#     `kubernetes-validate --strict -k 1.30.0`; its WARN lines (unknown kind or removed apiVersion) fail
#     the check too.
#  3. The ServiceMonitor (a CRD that kubernetes-validate has no schema for) is checked structurally, and
#     cross-references are checked: selectors match pod labels, the HPA targets the Deployment, probes,
#     resources, non-root and read-only root filesystem are set. The optional KubeRay RayCluster (value set
#     "ray") is checked against the fields KubeRay's ray.io/v1 API reference documents
#     (kuberay_v1_fields.json; its CRD schema cannot be fetched here), its pod templates go to
#     kubernetes-validate as Pods, and ITM_RAY_ADDRESS, the image and the Ray version must agree with it.
#     The head pod mounts its service account token exactly when the autoscaler sidecar runs in it (value
#     set "ray-fixed" turns autoscaling off), workers never, and the chart adds no RBAC (KubeRay does).
#     Every Ray container has its own readiness and liveness probes (else KubeRay injects `wget` ones, and
#     the image has no wget): an HTTP GET of /api/healthz on the port rayStartParams give the dashboard
#     agent, or an exec; no probe anywhere runs wget or curl. Ray containers run non-root on a read-only
#     root with /tmp (Ray's temp dir), /dev/shm (object store) and the image user's HOME as emptyDirs.
#  4. Forbidden values fail to render (values.schema.json types; a PVC shared by autoscaled replicas;
#     neither apiKeys.existingSecret nor allowAnonymous, by the schema and, without it, by the template;
#     an unknown key anywhere under ray; ray.workers outside minReplicas <= replicas <= maxReplicas; a
#     ray.rayVersion other than the image's Ray, Chart.yaml's itmstream/ray-version = pyproject's pin).
#
# Idempotent; ~5-10 s once tools are installed.
set -euo pipefail
CHECK_NAME=helm
# shellcheck source=deploy/ci/lib.sh
source "$(dirname "$0")/lib.sh"

started=$(date +%s)
WORK="$(mktemp -d /tmp/itm-helm.XXXXXX)"
trap 'status=$?; rm -rf "$WORK"; log "$([[ $status -eq 0 ]] && echo PASS || echo FAIL) in $(( $(date +%s) - started )) s"; exit $status' EXIT
KUBE_VERSION=1.30.0

TOOLS="$(tools_venv 'helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' 'PyYAML>=6')"
CHART="$DEPLOY_DIR/helm/itmstream"

# The validator must reject what it should: guard against a silently passing tool.
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n' >"$WORK/bad.yaml"
if "$TOOLS/kubernetes-validate" --strict -k "$KUBE_VERSION" --quiet "$WORK/bad.yaml" >/dev/null 2>&1; then
    die "kubernetes-validate accepted an invalid Service; the check would prove nothing"
fi

timeout 120 "$TOOLS/python" - "$CHART" "$WORK" "$KUBE_VERSION" "$DEPLOY_DIR/ci/kuberay_v1_fields.json" \
    "$DEPLOY_DIR/../pyproject.toml" <<'PY' || die "helm lint/render"
import json
import re
import sys
from pathlib import Path

import helm_python as helm
import yaml

chart_dir, work, kube = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
KUBERAY = json.loads(Path(sys.argv[4]).read_text())
RAY_PIN = re.search(r'"ray\[default\]==([0-9.]+)"', Path(sys.argv[5]).read_text()).group(1)
RAY_VERSION = tuple(int(part) for part in RAY_PIN.split("."))
RAY_AGENT_PORT = 52365  # `ray start --dashboard-agent-listen-port` default (ray_constants), KubeRay's too
IMAGE_HOME = re.search(r"--home-dir (\S+)", (Path(sys.argv[5]).parent / "Dockerfile").read_text()).group(1)
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

VALUE_SETS = {
    "defaults": {"apiKeys": {"existingSecret": "itm-keys"}},  # the one value a default install must add
    "single-persistent": {
        "replicaCount": 1, "autoscaling": {"enabled": False},
        "persistence": {"enabled": True, "storageClass": "fast"},
        "apiKeys": {"existingSecret": "itm-keys"},
    },
    "fixed-replicas": {
        "replicaCount": 3, "autoscaling": {"enabled": False}, "serviceMonitor": {"enabled": False},
        "service": {"sessionAffinity": "None"}, "allowAnonymous": True,
    },
    "ray": {
        "apiKeys": {"existingSecret": "itm-keys"},
        "ray": {"enabled": True, "workers": {"replicas": 2, "minReplicas": 1, "maxReplicas": 16}},
    },
    "ray-fixed": {
        "allowAnonymous": True,
        "ray": {"enabled": True, "autoscaler": {"enabled": False}, "workers": {"replicas": 3}},
    },
}

failed = False
for name, values in VALUE_SETS.items():
    report = helm.lint(chart_dir, values or None, strict=True, kube_version=f"v{kube}")
    for message in report["messages"]:
        level = SEVERITY.get(message["severity"], "?")
        print(f"lint[{name}] {level} {message['path']}: {message['error']}", file=sys.stderr)
        failed |= message["severity"] >= 2
    for error in report["errors"]:
        print(f"lint[{name}] ERROR {error}", file=sys.stderr)
        failed = True
if failed:
    sys.exit("helm lint --strict reported warnings or errors")
print(f"helm lint --strict clean for {len(VALUE_SETS)} value sets", file=sys.stderr)

chart = helm.Chart.load(chart_dir)


def docs_of(values: dict) -> list[dict]:
    rendered = chart.render(values or None, name="itm", namespace="media", is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def check(name: str, docs: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (deploy,) = by_kind["Deployment"]
    (service,) = by_kind["Service"]
    pod = deploy["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]

    def selects(selector: dict, labels: dict, what: str) -> None:
        assert selector and all(labels.get(k) == v for k, v in selector.items()), f"{name}: {what} selects nothing"

    selects(deploy["spec"]["selector"]["matchLabels"], pod_labels, "Deployment selector")
    selects(service["spec"]["selector"], pod_labels, "Service selector")
    (container,) = pod["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe in container, f"{name}: no {probe}"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"], f"{name}: no resources"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts, f"{name}: data and tmp must be writable volumes"
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deploy["metadata"]["name"])
        assert "replicas" not in deploy["spec"], f"{name}: Deployment.replicas fights the HPA"
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selects(pdb["spec"]["selector"]["matchLabels"], pod_labels, "PodDisruptionBudget selector")
    for monitor in by_kind.get("ServiceMonitor", []):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"], "ServiceMonitor")
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics", endpoint
    claim = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    pvcs = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
    assert {v["persistentVolumeClaim"]["claimName"] for v in claim} == pvcs, f"{name}: PVC mismatch"
    (config,) = by_kind["ConfigMap"]
    keys = {e["name"]: e for e in container.get("env", [])}.get("ITM_API_KEYS")
    anonymous = config["data"].get("ITM_ALLOW_ANONYMOUS")
    if VALUE_SETS[name].get("allowAnonymous"):
        assert keys is None and anonymous == "true", f"{name}: allowAnonymous must set ITM_ALLOW_ANONYMOUS only"
    else:
        ref = keys["valueFrom"]["secretKeyRef"] if keys else {}
        assert ref.get("name") == "itm-keys" and ref.get("optional") is False, f"{name}: ITM_API_KEYS {keys}"
        assert anonymous is None, f"{name}: anonymous access without asking for it"
    assert config["data"]["ITM_HOST"] == "0.0.0.0"  # why auth is required at all
    # Everything but the CRDs goes to kubernetes-validate; RayCluster pod templates go as Pods.
    builtin = [d for d in docs if d["kind"] not in ("ServiceMonitor", "RayCluster")]
    rbac = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(by_kind)
    assert not rbac, f"{name}: {rbac}: KubeRay creates the autoscaler's RBAC; the service needs none"
    clusters = by_kind.get("RayCluster", [])
    assert len(clusters) == int(bool(VALUE_SETS[name].get("ray", {}).get("enabled"))), f"{name}: RayCluster"
    for cluster in clusters:
        builtin += check_raycluster(name, cluster, container, config)
    if not clusters:
        assert "ITM_RAY_ADDRESS" not in config["data"], f"{name}: ITM_RAY_ADDRESS without a RayCluster"
    no_probe_downloads(name, docs)
    (work / f"{name}.yaml").write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    print(f"{name}: {', '.join(sorted(f'{k} x{len(v)}' for k, v in by_kind.items()))}", file=sys.stderr)


def documented(name: str, kind: str, obj: dict, where: str) -> None:
    unknown = sorted(set(obj) - set(KUBERAY[kind]))
    assert not unknown, f"{name}: {where} has fields KubeRay's {kind} does not document: {unknown}"


def check_raycluster(name: str, cluster: dict, service: dict, config: dict) -> list[dict]:
    """The RayCluster against KubeRay's documented fields; returns its pod templates as Pods to validate."""
    documented(name, "RayCluster", cluster, "RayCluster")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster"), name
    spec = cluster["spec"]
    documented(name, "RayClusterSpec", spec, "spec")
    documented(name, "AutoscalerOptions", spec.get("autoscalerOptions", {}), "spec.autoscalerOptions")
    mode = spec.get("autoscalerOptions", {}).get("upscalingMode", "Default")
    assert mode in KUBERAY["UpscalingMode"], f"{name}: upscalingMode {mode}"
    assert spec["rayVersion"] == RAY_PIN, f"{name}: rayVersion {spec['rayVersion']} is not the image's Ray {RAY_PIN}"
    groups = [("spec.headGroupSpec", "HeadGroupSpec", spec["headGroupSpec"])]
    groups += [(f"spec.workerGroupSpecs[{i}]", "WorkerGroupSpec", g) for i, g in enumerate(spec["workerGroupSpecs"])]
    pods = []
    for where, kind, group in groups:
        documented(name, kind, group, where)
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), f"{name}: {where}.rayStartParams must be strings"
        if kind == "WorkerGroupSpec":
            assert group["groupName"], f"{name}: {where} has no groupName"
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"{name}: {where}"
        template = group["template"]
        for ray_container in template["spec"]["containers"]:
            assert ray_container["image"] == service["image"], f"{name}: {where} runs another image"
            assert ray_container["resources"]["limits"], f"{name}: {where} has no resource limits"
            check_ray_probes(f"{name}: {where}", ray_container, params)
            check_ray_writable(f"{name}: {where}", template["spec"], ray_container, params)
        pod_name = f"{cluster['metadata']['name']}-{where.split('.')[-1].replace('[', '-').rstrip(']')}".lower()
        metadata = {**template.get("metadata", {}), "name": pod_name}
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
    address = f"ray://{cluster['metadata']['name']}-head-svc:10001"
    assert config["data"].get("ITM_RAY_ADDRESS") == address, f"{name}: ITM_RAY_ADDRESS is not {address}"
    check_autoscaler_token(name, spec)
    return pods


def check_ray_probes(where: str, container: dict, params: dict) -> None:
    """Both probes are the template's own, on the port the node's dashboard agent listens on.

    Without them KubeRay injects probes, which before ray-project/kuberay#4448 run `wget ... | grep success`
    in the container, and the image has no wget: the pods would never be ready. An HTTP GET is made by the
    kubelet and needs nothing in the image; /api/healthz (raylet, and GCS on the head) exists from Ray 2.53.
    """
    agent_port = int(params.get("dashboard-agent-listen-port", RAY_AGENT_PORT))
    for kind in ("readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        assert probe, f"{where}: no {kind} (KubeRay would inject one that runs wget, which the image lacks)"
        handlers = set(probe) & {"exec", "httpGet", "tcpSocket", "grpc"}
        assert handlers in ({"exec"}, {"httpGet"}), f"{where}: {kind} handlers {sorted(handlers)}"
        if "httpGet" in probe:
            get = probe["httpGet"]
            assert (get["path"], get["port"]) == ("/api/healthz", agent_port), f"{where}: {kind} GET {get}"
            assert RAY_VERSION >= (2, 53), f"{where}: Ray {RAY_PIN} has no /api/healthz (2.53+)"


def check_ray_writable(where: str, pod: dict, container: dict, params: dict) -> None:
    """A non-root Ray container on a read-only root writes only to emptyDirs: /tmp (Ray's --temp-dir, and
    so its session directory), /dev/shm (the object store) and the image user's HOME."""
    assert pod["securityContext"]["runAsNonRoot"] is True, f"{where}: runs as root"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True, f"{where}: writable root"
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    mounts = {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty}
    need = {"/tmp", "/dev/shm", IMAGE_HOME}
    need |= {params.get("temp-dir", "/tmp/ray"), params.get("plasma-directory", "/dev/shm")}
    unwritable = [p for p in sorted(need) if not any(p == m or p.startswith(m.rstrip("/") + "/") for m in mounts)]
    assert not unwritable, f"{where}: {unwritable} would be on the read-only root (emptyDirs: {sorted(mounts)})"


def no_probe_downloads(name: str, node: object) -> None:
    """No probe anywhere in the manifests runs wget or curl: the image (python:3.12-slim) has neither."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PROBES and "exec" in value:
                command = " ".join(value["exec"].get("command", []))
                assert not re.search(r"\b(wget|curl)\b", command), f"{name}: {key} runs '{command}'"
            no_probe_downloads(name, value)
    elif isinstance(node, list):
        for item in node:
            no_probe_downloads(name, item)


def check_autoscaler_token(name: str, spec: dict) -> None:
    """The head pod mounts its token exactly when KubeRay runs the autoscaler sidecar in it; workers never.

    The sidecar reads /var/run/secrets/kubernetes.io/serviceaccount/token to patch the RayCluster. KubeRay
    creates the ServiceAccount (named after the RayCluster), Role and RoleBinding it uses, but only while the
    head pod names no serviceAccountName (ray-operator reconcileAutoscalerServiceAccount): so none is named.
    """
    autoscaling = spec["enableInTreeAutoscaling"]
    head = spec["headGroupSpec"]["template"]["spec"]
    assert isinstance(autoscaling, bool), f"{name}: enableInTreeAutoscaling {autoscaling!r}"
    assert head.get("automountServiceAccountToken") is autoscaling, (
        f"{name}: head automountServiceAccountToken must be {autoscaling} (the autoscaler sidecar's token)"
    )
    assert "serviceAccountName" not in head, f"{name}: KubeRay provisions the autoscaler's account itself"
    assert ("autoscalerOptions" in spec) is autoscaling, f"{name}: autoscalerOptions without the autoscaler"
    for group in spec["workerGroupSpecs"]:
        worker = group["template"]["spec"]
        assert worker.get("automountServiceAccountToken") is False, f"{name}: a worker mounts an API token"


for name, values in VALUE_SETS.items():
    check(name, docs_of(values))

def refused(values: dict, *needles: str) -> None:
    """Rendering ``values`` must fail, with every one of ``needles`` in the message."""
    try:
        docs_of(values)
    except helm.HelmError as exc:
        assert all(needle in str(exc) for needle in needles), f"{values}: {exc}"
    else:
        sys.exit(f"the chart rendered {values}; it must refuse it ({', '.join(needles)})")


KEYS = {"apiKeys": {"existingSecret": "k"}}
refused({**KEYS, "ray": {"enabled": True, "autoscaler": {"upscalingMode": "Fast"}}}, "/ray/autoscaler/upscalingMode")
refused({"service": {"port": "eighty"}}, "/service/port")
# The ray values: a misspelt key is refused rather than ignored (additionalProperties: false), at every level.
for where, values in {
    "/ray": {"segmentSecond": 5},
    "/ray/autoscaler": {"autoscaler": {"idleTimeout": 60}},
    "/ray/head": {"head": {"cpu": "2"}},
    "/ray/head/resources": {"head": {"resources": {"limits": {"cpu": "1"}, "limit": {}}}},
    "/ray/workers": {"workers": {"replica": 2}},
}.items():
    refused({**KEYS, "ray": {"enabled": True, **values}}, where)
# The worker group's bounds (the template's guard: the schema cannot relate the three).
for workers in ({"replicas": 9, "maxReplicas": 8}, {"replicas": 0, "minReplicas": 1}, {"minReplicas": 3, "maxReplicas": 2}):
    refused({**KEYS, "ray": {"enabled": True, "workers": workers}}, "ray.workers: minReplicas (", "does not hold")
# A Ray other than the image's: service, head and workers must run the same one.
refused({**KEYS, "ray": {"enabled": True, "rayVersion": "2.59.0"}}, 'ray.rayVersion "2.59.0"', RAY_PIN)
refused({**KEYS, "ray": {"enabled": True, "rayVersion": "latest"}}, "/ray/rayVersion")
(raycluster,) = [d for d in docs_of({**KEYS, "ray": {"enabled": True, "rayVersion": RAY_PIN}}) if d["kind"] == "RayCluster"]
assert raycluster["spec"]["rayVersion"] == RAY_PIN, "ray.rayVersion equal to the image's Ray is accepted"
assert chart.metadata["annotations"]["itmstream/ray-version"] == RAY_PIN, "Chart.yaml's Ray is not pyproject's"

# Neither a key Secret nor allowAnonymous: the schema refuses, naming both values...
for values in ({}, {"apiKeys": {"existingSecret": ""}, "allowAnonymous": False}):
    refused(values, "/apiKeys/existingSecret", "/allowAnonymous")
# ...and so does the template's own guard when the schema is not applied (a copy without it).
import shutil

bare = work / "chart-without-schema"
shutil.copytree(chart_dir, bare)
(bare / "values.schema.json").unlink()
try:
    helm.Chart.load(str(bare)).render(None, name="itm", namespace="media", is_install=True)
except helm.HelmError as exc:
    assert "apiKeys.existingSecret" in str(exc) and "allowAnonymous=true" in str(exc), exc
else:
    sys.exit("without values.schema.json the chart rendered with no API keys and no allowAnonymous")
shutil.rmtree(bare)

refused({"persistence": {"enabled": True}, "autoscaling": {"enabled": True}, "allowAnonymous": True}, "exactly one replica")
PY

for rendered in "$WORK"/*.yaml; do
    [[ "$(basename "$rendered")" == bad.yaml ]] && continue
    out="$("$TOOLS/kubernetes-validate" --strict -k "$KUBE_VERSION" - <"$rendered" 2>&1)" \
        || { printf '%s\n' "$out" >&2; die "kubernetes-validate: $(basename "$rendered")"; }
    if grep -qvE '^INFO ' <<<"$out"; then
        printf '%s\n' "$out" >&2
        die "kubernetes-validate printed warnings for $(basename "$rendered")"
    fi
    log "kubernetes-validate --strict -k $KUBE_VERSION: $(basename "$rendered" .yaml) $(grep -c '^INFO' <<<"$out") resources passed"
done
