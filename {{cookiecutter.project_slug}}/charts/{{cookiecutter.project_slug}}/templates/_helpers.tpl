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
{{- $ports := dict "server" (dict "port" (int .Values.containerPort)) }}
{{- if .Values.managementPort }}
{{- if eq (int .Values.managementPort) (int .Values.containerPort) }}
{{- fail "managementPort must differ from containerPort" }}
{{- end }}
{{- $_ := set $ports "management" (dict "port" (int .Values.managementPort)) }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.settings) $ports) }}
{{- end }}

{{/* The name of the container port that serves the probes and the metrics. */}}
{{- define "service.managementPortName" -}}
{{- if .Values.managementPort }}management{{ else }}http{{ end }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the service's drain delay, grace period and resource stops, plus a margin. */}}
{{- define "service.terminationGracePeriodSeconds" -}}
{{- $delay := dig "shutdown" "delay" 3 .Values.settings }}
{{- $grace := dig "shutdown" "grace_period" 25 .Values.settings }}
{{- $stop := dig "resources" "stop_timeout" 10 .Values.settings }}
{{- add (ceil $delay) (ceil $grace) (ceil $stop) 5 }}
{{- end }}

{{/* Where secretFiles' Secret is mounted. */}}
{{- define "service.secretFilesPath" -}}
/run/secrets/service
{{- end }}

{{/* Where the settings ConfigMap is mounted, and the settings file in it. */}}
{{- define "service.settingsDir" -}}
/etc/service
{{- end }}

{{/*
env of the service's container: <prefix>_CONFIG naming the settings file, then <variable>_FILE for
each of secretFiles.variables, then extraEnv. The settings file goes by the environment, not by
--config, so that every process of the container reads it: the command, and the image's
HEALTHCHECK (which asks the port the settings name), or a `config show` run with kubectl exec.
*/}}
{{- define "service.env" -}}
env:
  - name: {{ printf "%s_CONFIG" (required "Chart.yaml's annotation settingsEnvPrefix names the service's environment variables" .Chart.Annotations.settingsEnvPrefix) }}
    value: {{ printf "%s/settings.yml" (include "service.settingsDir" .) | quote }}
  {{- range $variable, $key := .Values.secretFiles.variables }}
  - name: {{ printf "%s_FILE" $variable }}
    value: {{ printf "%s/%s" (include "service.secretFilesPath" $) $key | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The volume of secretFiles' Secret, holding the keys its variables name. */}}
{{- define "service.secretFilesVolume" -}}
{{- with .Values.secretFiles }}
{{- if .variables }}
- name: secret-files
  secret:
    secretName: {{ .secretName }}
    items:
      {{- range values .variables | uniq | sortAlpha }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "service.secretFilesMount" -}}
{{- if .Values.secretFiles.variables }}
- name: secret-files
  mountPath: {{ include "service.secretFilesPath" . }}
  readOnly: true
{{- end }}
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

{{/*
The worker's names and labels. The worker is the same application in another role, yet its
pods get a name label of their own (as Argo CD's components do): the API's pods are selected
by name and instance, in their Deployment (where an upgrade may not change the selector), the
Service, the PodDisruptionBudget, the autoscaler and the NetworkPolicy, none of which may
select worker pods.
*/}}
{{- define "service.worker.fullname" -}}
{{- printf "%s-worker" (include "service.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "service.worker.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-worker" (include "service.name" . | trunc 56 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "service.worker.labels" -}}
helm.sh/chart: {{ include "service.chart" . }}
{{ include "service.worker.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "service.name" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Annotations of the pods: a changed settings file or secretEnv rolls them. */}}
{{- define "service.podAnnotations" -}}
checksum/settings: {{ include "service.settings" . | sha256sum }}
{{- if .Values.secretEnv }}
checksum/secret: {{ toYaml .Values.secretEnv | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The resources of a container of the service: those given; when they set no memory (neither
request nor limit), memory.baseMiB + memory.perWorkerMiB x settings.server.workers (each worker
is a process of its own; see values.yaml for the figures), as both request and limit: memory
cannot be throttled, and a pod using more than it requested is the first evicted on a busy node.
Takes a dict: context (the root), resources, and workers for a command that runs one process
whatever server.workers says (the Job of a project with a database).
*/}}
{{- define "service.resources" -}}
{{- $values := .context.Values }}
{{- $resources := deepCopy (default dict .resources) }}
{{- $requests := get $resources "requests" | default dict }}
{{- $limits := get $resources "limits" | default dict }}
{{- if not (or (hasKey $requests "memory") (hasKey $limits "memory")) }}
{{- $workers := int (.workers | default (dig "server" "workers" 1 $values.settings)) }}
{{- $memory := printf "%dMi" (add (int $values.memory.baseMiB) (mul (int $values.memory.perWorkerMiB) $workers)) }}
{{- $_ := set $requests "memory" $memory }}
{{- $_ := set $limits "memory" $memory }}
{{- $_ := set $resources "requests" $requests }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
The spec of the API's pods and of the worker's: the same image, settings, secrets, probes and
security, one command of the service. Takes a dict: context (the root), container (its name),
command (serve or worker), resources, selectorLabels (of these pods, for spreading them).
*/}}
{{- define "service.podSpec" -}}
{{- $values := .context.Values -}}
serviceAccountName: {{ include "service.serviceAccountName" .context }}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: {{ $values.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml $values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ include "service.terminationGracePeriodSeconds" .context }}
containers:
  - name: {{ .container }}
    image: "{{ $values.image.repository }}:{{ $values.image.tag | default .context.Chart.AppVersion }}"
    imagePullPolicy: {{ $values.image.pullPolicy }}
    args: [{{ .command | quote }}]
    ports:
      {{- /* A worker has no API: with a management port it listens on that alone. */}}
      {{- if or (eq .command "serve") (not $values.managementPort) }}
      - name: http
        containerPort: {{ $values.containerPort }}
        protocol: TCP
      {{- end }}
      {{- if $values.managementPort }}
      - name: management
        containerPort: {{ $values.managementPort }}
        protocol: TCP
      {{- end }}
    {{- include "service.env" .context | nindent 4 }}
    {{- with include "service.envFrom" (dict "context" .context "secretName" (include "service.fullname" .context)) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- /* Both commands answer these on the port: serve with the API, worker alone. */}}
    startupProbe:
      httpGet:
        path: /health/startup
        port: {{ include "service.managementPortName" .context }}
      {{- toYaml $values.probes.startup | nindent 6 }}
    livenessProbe:
      httpGet:
        path: /health/live
        port: {{ include "service.managementPortName" .context }}
      {{- toYaml $values.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /health/ready
        port: {{ include "service.managementPortName" .context }}
      {{- toYaml $values.probes.readiness | nindent 6 }}
    resources:
      {{- include "service.resources" (dict "context" .context "resources" .resources) | nindent 6 }}
    securityContext:
      {{- toYaml $values.securityContext | nindent 6 }}
    volumeMounts:
      - name: settings
        mountPath: {{ include "service.settingsDir" .context }}
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- include "service.secretFilesMount" .context | nindent 6 }}
volumes:
  - name: settings
    configMap:
      name: {{ include "service.fullname" .context }}
  # The only writable place (the root filesystem is read-only).
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: {{ $values.tmpSizeLimit }}
  {{- include "service.secretFilesVolume" .context | nindent 2 }}
{{- if $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $values.topologySpreadConstraints }}
  - labelSelector:
      matchLabels:
        {{- $.selectorLabels | nindent 8 }}
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The NetworkPolicy rule of the management port: only from managementNamespaces' pods. */}}
{{- define "service.managementIngressRule" -}}
{{- if .Values.managementPort }}
- ports:
    - port: management
      protocol: TCP
  from:
    {{- range .Values.networkPolicy.managementNamespaces }}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
