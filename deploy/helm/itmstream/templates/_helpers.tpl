{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "itmstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart name. */}}
{{- define "itmstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "itmstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "itmstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "itmstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "itmstream.labels" -}}
helm.sh/chart: {{ include "itmstream.chart" . }}
{{ include "itmstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "itmstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "itmstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Auth is required beyond loopback (service/server.py refuses to start otherwise): fail at render time, with
both ways out, rather than ship pods that crash-loop.
*/}}
{{- define "itmstream.requireAuth" -}}
{{- if and (not .Values.apiKeys.existingSecret) (not .Values.allowAnonymous) }}
{{- fail "itmstream listens on 0.0.0.0 and would serve uploads and streams to anyone: set apiKeys.existingSecret to a Secret holding ITM_API_KEYS, or set allowAnonymous=true to serve without keys on purpose" }}
{{- end }}
{{- end }}

{{/* The RayCluster's name; KubeRay names the head Service "<name>-head-svc" (ITM_RAY_ADDRESS points there). */}}
{{- define "itmstream.rayClusterName" -}}
{{- printf "%s-ray" (include "itmstream.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/*
The RayCluster's Ray version: the image's (Chart.yaml annotation itmstream/ray-version). ray.rayVersion may
repeat it and nothing else, as the service drives the cluster with the image's Ray: a head or workers on
another Ray would refuse it. Also checks the worker group's replica bounds, which the schema cannot relate.
*/}}
{{- define "itmstream.rayVersion" -}}
{{- $image := index .Chart.Annotations "itmstream/ray-version" }}
{{- with .Values.ray.rayVersion }}
{{- if ne . $image }}
{{- fail (printf "ray.rayVersion %q is not the Ray in the image (%s, pinned in pyproject.toml): the service, the head and the workers must run the same Ray; leave ray.rayVersion empty" . $image) }}
{{- end }}
{{- end }}
{{- $image }}
{{- end }}

{{- define "itmstream.rayWorkerReplicas" -}}
{{- $w := .Values.ray.workers }}
{{- if not (and (le (int $w.minReplicas) (int $w.replicas)) (le (int $w.replicas) (int $w.maxReplicas))) }}
{{- fail (printf "ray.workers: minReplicas (%d) <= replicas (%d) <= maxReplicas (%d) does not hold" (int $w.minReplicas) (int $w.replicas) (int $w.maxReplicas)) }}
{{- end }}
{{- end }}

{{/*
The port of Ray's dashboard agent on every Ray node: given to `ray start` (rayStartParams) and probed by
itmstream.rayProbes, so the two cannot drift apart. 52365 is Ray's and KubeRay's default.
*/}}
{{- define "itmstream.rayAgentPort" -}}
52365
{{- end }}

{{/*
Readiness and liveness probes of a Ray container; the argument is "head" or "worker". Without them KubeRay
injects its own, which before KubeRay's "Use HTTP health check when possible" (ray-project/kuberay#4448)
run `wget ... | grep success` in the container: our image (python:3.12-slim) has no wget, so the pods
would never become ready. KubeRay keeps probes the template defines. This is the probe KubeRay now injects
for Ray >= 2.53: an HTTP GET of the dashboard agent's /api/healthz (ray-project/ray#56943), which checks
this node's raylet and, on the head, the GCS, and answers 503 if either fails. The kubelet makes the request, so
nothing is needed in the image, and the agent runs on every node whether or not the dashboard does. Timings
are KubeRay's defaults.
*/}}
{{- define "itmstream.rayProbes" -}}
{{- $get := printf "{path: /api/healthz, port: %s}" (include "itmstream.rayAgentPort" .) }}
{{- $timeout := ternary 5 2 (eq . "head") }}
readinessProbe:
  httpGet: {{ $get }}
  initialDelaySeconds: 10
  periodSeconds: 5
  timeoutSeconds: {{ $timeout }}
  failureThreshold: 10
livenessProbe:
  httpGet: {{ $get }}
  initialDelaySeconds: 30
  periodSeconds: 5
  timeoutSeconds: {{ $timeout }}
  failureThreshold: 120
{{- end }}

{{/*
The writable paths of a Ray container, whose root filesystem is read-only (securityContext): everything Ray
writes goes to /tmp/ray (session directory: logs, sockets, spilled objects, runtime envs; `ray start`'s
--temp-dir default) and the object store to /dev/shm, both emptyDirs here. /data is the image user's HOME
and WORKDIR: `ray start` only reads ~/.ray/auth_token there (usage stats are off by RAY_USAGE_STATS_ENABLED,
not by writing ~/.ray/config.json), but the image declares /data a VOLUME, which container runtimes handle
differently under a read-only root, so it is an emptyDir as well. Numba's cache (NUMBA_CACHE_DIR) is /tmp/numba.
*/}}
{{- define "itmstream.rayVolumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: shm, mountPath: /dev/shm}  # the object store, and each segment's scratch files
- {name: home, mountPath: /data}
{{- end }}

{{- define "itmstream.rayVolumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 4Gi}
- name: shm
  emptyDir: {medium: Memory}
- name: home
  emptyDir: {sizeLimit: 1Gi}
{{- end }}
