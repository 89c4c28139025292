{{/* Names and labels. */}}
{{- define "payflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "payflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "payflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "payflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Every pod of the release: the server pods and the migration Job's. */}}
{{- define "payflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The server pods only (not the migration Job's). */}}
{{- define "payflow.serverSelectorLabels" -}}
{{ include "payflow.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "payflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The most server pods the autoscaler (or replicaCount) allows. */}}
{{- define "payflow.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- .Values.autoscaling.maxReplicas | int -}}
{{- else -}}
{{- .Values.replicaCount | int -}}
{{- end -}}
{{- end -}}

{{/*
The connection budget (docs/operations.md): every server pod holds
poolSize pooled connections plus the relay's lock connection, the
migration Job one. Rendering fails when they cannot all fit the server's
max_connections less its reserved ones.
*/}}
{{- define "payflow.checkConnectionBudget" -}}
{{- $surge := toString .Values.rollingUpdate.maxSurge -}}
{{- if not (regexMatch "^[0-9]+$" $surge) -}}
{{- fail (printf "rollingUpdate.maxSurge must be a number of pods (the connection budget counts it), not %q" $surge) -}}
{{- end -}}
{{- $pods := add (include "payflow.maxReplicas" . | int) ($surge | int) -}}
{{- $perPod := add (.Values.database.poolSize | int) 1 -}}
{{- $migration := ternary 1 0 .Values.migration.enabled -}}
{{- $need := add (mul $pods $perPod) $migration (.Values.database.otherConnections | int) -}}
{{- $have := sub (.Values.database.maxConnections | int) (.Values.database.reservedConnections | int) -}}
{{- if lt (.Values.database.poolSize | int) 1 -}}
{{- fail "database.poolSize must be at least 1" -}}
{{- end -}}
{{- if gt $need $have -}}
{{- fail (printf "connection budget exceeded: %d pods x (%d pooled + 1 relay) + %d migration + %d other = %d connections, but Postgres allows %d (max_connections %d - %d reserved); lower database.poolSize or the maximum replicas, or raise database.maxConnections (docs/operations.md)" $pods (.Values.database.poolSize | int) $migration (.Values.database.otherConnections | int) $need $have (.Values.database.maxConnections | int) (.Values.database.reservedConnections | int)) -}}
{{- end -}}
{{- end -}}

{{/* Environment variables that must come from the Secret, never values. */}}
{{- define "payflow.checkConfig" -}}
{{- range $name, $value := .Values.config -}}
{{- if or (regexMatch "SECRET|TOKEN|PASSWORD" $name) (has $name (list "DATABASE_URL" "PAYFLOW_VAULT_KEY" "PAYFLOW_MERCHANT_KEYS" "PAYFLOW_PG_API_KEY" "PAYFLOW_PAYSSAM_API_KEY")) -}}
{{- fail (printf "config.%s looks like a secret: give it through secret.env (a key of the Secret %q) instead" $name $.Values.secret.name) -}}
{{- end -}}
{{- if has $name (list "PAYFLOW_DB_MAX_CONNS" "PAYFLOW_TOPIC_REQUESTS" "PAYFLOW_TOPIC_EVENTS" "PAYFLOW_TOPIC_DLQ" "PAYFLOW_GROUP_ID") -}}
{{- fail (printf "config.%s is set by the chart from its own values (database.poolSize, kafka.topics, kafka.consumerGroup)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The secret environment variables of a container. */}}
{{- define "payflow.secretEnv" -}}
{{- range $name, $key := .Values.secret.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $.Values.secret.name | quote }}, key: {{ $key | quote }}}
{{- end }}
{{- range $name, $key := .Values.secret.optionalEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $.Values.secret.name | quote }}, key: {{ $key | quote }}, optional: true}
{{- end }}
{{- end -}}

{{- define "payflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "payflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: ["ALL"]}
{{- end -}}
