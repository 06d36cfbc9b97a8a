{{/* Names, labels and image references shared by the templates. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.server.name" -}}
{{- printf "%s-server" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.server.headless" -}}
{{- printf "%s-server-headless" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.gateway.name" -}}
{{- printf "%s-gateway" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.config.name" -}}
{{- printf "%s-config" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "server") */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects: (dict "ctx" $ "component" "server") */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end -}}

{{- define "switchboard.server.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchboard.gateway.image" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (default .Chart.AppVersion .Values.gateway.image.tag) -}}
{{- end -}}

{{- define "switchboard.secretName" -}}
{{- required "secrets.existingSecret is required: the name of a Secret holding SWITCHBOARD_PG_DSN, SWITCHBOARD_REDIS_URL and the tokens (see values.yaml)" .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Fails the render when a secret setting is put into `config` (the server refuses it too). */}}
{{- define "switchboard.checkConfig" -}}
{{- range $key := list "login_bot_token" "pg_dsn" "redis_url" -}}
{{- if hasKey $.Values.config $key -}}
{{- fail (printf "config.%s must not be in values: put it in the Secret (secrets.existingSecret) as SWITCHBOARD_%s" $key (upper $key)) -}}
{{- end -}}
{{- end -}}
{{- if $.Values.config.dev_login_enabled -}}
{{- fail "config.dev_login_enabled must be false outside env dev" -}}
{{- end -}}
{{- end -}}

{{/* The config file the server reads: <config.env>.yaml in SWITCHBOARD_CONFIG_DIR. */}}
{{- define "switchboard.configFile" -}}
{{- printf "%s.yaml" (default "prod" .Values.config.env) -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "switchboard.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The server's environment: the config file location, the Secret, extra variables. */}}
{{- define "switchboard.server.env" -}}
env:
  - name: SWITCHBOARD_ENV
    value: {{ default "prod" .Values.config.env | quote }}
  - name: SWITCHBOARD_CONFIG_DIR
    value: /etc/switchboard
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
envFrom:
  - secretRef:
      name: {{ include "switchboard.secretName" . }}
{{- end -}}

{{- define "switchboard.dispatcher.name" -}}
{{- printf "%s-dispatcher" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.bots.name" -}}
{{- printf "%s-bots" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The server's gRPC address for in-cluster clients (dispatcher, bots): its Service's FQDN. */}}
{{- define "switchboard.server.address" -}}
{{- printf "%s.%s.svc.%s:%v" (include "switchboard.server.name" .) .Release.Namespace .Values.clusterDomain .Values.server.grpcPort -}}
{{- end -}}

{{/* "login-bot" -> "LOGIN_BOT": a name inside an environment variable's name. */}}
{{- define "switchboard.envName" -}}
{{- regexReplaceAll "[^A-Za-z0-9]" . "_" | upper -}}
{{- end -}}

{{/* One key of the Secret as a variable: (dict "ctx" $ "key" "SWITCHBOARD_X" "optional" true).
The dispatcher and the bots get only their own keys, not the database or the data key. */}}
{{- define "switchboard.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.secretName" .ctx }}
      key: {{ .key }}
      optional: {{ .optional }}
{{- end -}}

{{/* Fails the render when telegramBots names a principal that config does not declare. */}}
{{- define "switchboard.checkBots" -}}
{{- range $bot := .Values.telegramBots -}}
{{- if not (regexMatch "^[a-z][a-z0-9_]{0,31}$" $bot.name) -}}
{{- fail (printf "telegramBots: bot name %q must match ^[a-z][a-z0-9_]{0,31}$" $bot.name) -}}
{{- end -}}
{{- if not (hasKey ($.Values.config.service_principals | default dict) $bot.principal) -}}
{{- fail (printf "telegramBots: bot %s acts as principal %q, which config.service_principals does not declare" $bot.name $bot.principal) -}}
{{- end -}}
{{- end -}}
{{- end -}}
