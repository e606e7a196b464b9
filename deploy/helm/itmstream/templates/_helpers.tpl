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
