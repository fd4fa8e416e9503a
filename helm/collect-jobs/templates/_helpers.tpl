{{/* Chart name. */}}
{{- define "collect-jobs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters (DNS label). */}}
{{- define "collect-jobs.fullname" -}}
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

{{- define "collect-jobs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "collect-jobs.labels" -}}
helm.sh/chart: {{ include "collect-jobs.chart" . }}
{{ include "collect-jobs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "collect-jobs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "collect-jobs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret holding MONGODB_URI: an existing one, or the chart's. */}}
{{- define "collect-jobs.secretName" -}}
{{- if .Values.mongodb.existingSecret }}
{{- .Values.mongodb.existingSecret }}
{{- else }}
{{- include "collect-jobs.fullname" . }}
{{- end }}
{{- end }}

{{- define "collect-jobs.secretKey" -}}
{{- if .Values.mongodb.existingSecret }}
{{- .Values.mongodb.existingSecretKey }}
{{- else -}}
mongodb-uri
{{- end }}
{{- end }}
