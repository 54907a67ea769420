{{/* The chart name, overridable. */}}
{{- define "lifeboat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: the release name when it contains the chart name
(`helm install lifeboat …` → "lifeboat"), else "<release>-<chart>".
*/}}
{{- define "lifeboat.fullname" -}}
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

{{/* Deployment, ClusterRole(Binding), PDB: "lifeboat-controller" by default. */}}
{{- define "lifeboat.controllerName" -}}
{{- printf "%s-controller" (include "lifeboat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lifeboat.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "lifeboat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lifeboat.metricsServiceName" -}}
{{- printf "%s-controller-metrics" (include "lifeboat.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lifeboat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lifeboat.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lifeboat.leaseName" -}}
{{- default (include "lifeboat.controllerName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "lifeboat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller's pods. */}}
{{- define "lifeboat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifeboat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels on every object. */}}
{{- define "lifeboat.labels" -}}
helm.sh/chart: {{ include "lifeboat.chart" . }}
{{ include "lifeboat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeboat
{{- end }}

{{/* repository:tag or repository@digest. Call with (dict "repository" … "tag" … "digest" …). */}}
{{- define "lifeboat.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/* The controller's image. */}}
{{- define "lifeboat.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- include "lifeboat.imageRef" (dict "repository" .Values.image.repository "tag" $tag "digest" .Values.image.digest) }}
{{- end }}

{{/* The Jobs' image (LIFEBOAT_IMAGE): jobImage, falling back to image. */}}
{{- define "lifeboat.jobImage" -}}
{{- $repository := .Values.jobImage.repository | default .Values.image.repository }}
{{- $tag := .Values.jobImage.tag | default .Values.image.tag | default .Chart.AppVersion | toString }}
{{- $digest := "" }}
{{- if .Values.jobImage.digest }}
{{- $digest = .Values.jobImage.digest }}
{{- else if and (not .Values.jobImage.repository) (not .Values.jobImage.tag) }}
{{- $digest = .Values.image.digest }}
{{- end }}
{{- include "lifeboat.imageRef" (dict "repository" $repository "tag" $tag "digest" $digest) }}
{{- end }}
