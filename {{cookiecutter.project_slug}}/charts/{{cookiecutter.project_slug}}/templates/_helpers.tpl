{{/* Names and labels shared by every manifest. */}}

{{- define "service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "service.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "service.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "service.labels" -}}
helm.sh/chart: {{ include "service.chart" . }}
{{ include "service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The service's settings file: the values' settings, with the port the pod exposes. */}}
{{- define "service.settings" -}}
{{- $port := dict "server" (dict "port" (int .Values.containerPort)) }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.settings) $port) }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the service's drain delay, grace period and resource stops, plus a margin. */}}
{{- define "service.terminationGracePeriodSeconds" -}}
{{- $delay := dig "shutdown" "delay" 3 .Values.settings }}
{{- $grace := dig "shutdown" "grace_period" 25 .Values.settings }}
{{- $stop := dig "resources" "stop_timeout" 10 .Values.settings }}
{{- add (ceil $delay) (ceil $grace) (ceil $stop) 5 }}
{{- end }}

{{/* envFrom of the service's container: existingSecret, then the Secret rendered from secretEnv (named secretName). */}}
{{- define "service.envFrom" -}}
{{- $values := .context.Values }}
{{- if or $values.existingSecret $values.secretEnv }}
envFrom:
  {{- if $values.existingSecret }}
  - secretRef:
      name: {{ $values.existingSecret }}
  {{- end }}
  {{- if $values.secretEnv }}
  - secretRef:
      name: {{ .secretName }}
  {{- end }}
{{- end }}
{{- end }}
