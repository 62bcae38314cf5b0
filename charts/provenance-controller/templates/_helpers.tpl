{{/*
Names. Kubernetes names are at most 63 characters, and the suffixes the chart appends ("-tls",
"-config", "-ca") need room: the base name is truncated to 52, the suffixed names to 63.
*/}}
{{- define "pc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "pc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pc.suffixed" -}}
{{- printf "%s-%s" (include "pc.fullname" .root) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pc.labels" -}}
helm.sh/chart: {{ include "pc.chart" . }}
{{ include "pc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: provenance-controller
{{- end }}

{{- define "pc.tlsSecretName" -}}
{{- include "pc.suffixed" (dict "root" . "suffix" "tls") }}
{{- end }}

{{- define "pc.configMapName" -}}
{{- include "pc.suffixed" (dict "root" . "suffix" "config") }}
{{- end }}

{{/* The image: by digest when one is given, else by tag (default: appVersion). */}}
{{- define "pc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespaces the webhook never sees: kube-system, the release namespace (so a broken controller
cannot block its own repair), and the configured exemptions. Sorted and de-duplicated so the
rendering is stable.
*/}}
{{- define "pc.exemptNamespaces" -}}
{{- $all := concat (list "kube-system" .Release.Namespace) .Values.webhook.exemptNamespaces }}
{{- toJson (sortAlpha (uniq $all)) }}
{{- end }}

{{- define "pc.ledgerNamespace" -}}
{{- .Values.config.ledger.namespace | default "provenance-ledger" }}
{{- end }}

{{- define "pc.checkpointKeyNamespace" -}}
{{- .Values.config.ledger.checkpoint_key_namespace | default .Release.Namespace }}
{{- end }}

{{/* The ConfigMap beside the ledger key holding each lane's newest signed head. */}}
{{- define "pc.signedHeads" -}}
{{- printf "%s.%s.head" (include "pc.ledgerNamespace" .) (.Values.config.ledger.chain | default "audit") }}
{{- end }}

{{- define "pc.checkpointKeySecret" -}}
{{- .Values.config.ledger.checkpoint_key_secret | default "provenance-ledger-checkpoint-key" }}
{{- end }}

{{/* The DNS names the API server uses for the webhook Service. */}}
{{- define "pc.serviceHosts" -}}
{{- $svc := include "pc.fullname" . }}
{{- $ns := .Release.Namespace }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}

{{/* The pod's restricted security context (Pod Security Standards "restricted"). */}}
{{- define "pc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "pc.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- /*
The webhooks of the ValidatingWebhookConfiguration: rendered into the object the API server
calls, and into the copy the controller's gate guard compares the live object with.
*/ -}}
{{- define "pc.webhooks" -}}
- name: workloads.validate.provenance.dev
  admissionReviewVersions: [v1]
  clientConfig:
    service:
      name: {{ include "pc.fullname" . }}
      namespace: {{ .Release.Namespace }}
      path: /validate
      port: {{ .Values.service.port }}
  # Every way of getting a container to run: each workload kind, and the Pod subresource
  # `kubectl debug` writes. Kept equal to controller.workloads.webhook_rules() by a test.
  rules:
    - apiGroups: [apps]
      apiVersions: [v1]
      resources: [deployments, replicasets, statefulsets, daemonsets]
      operations: [CREATE, UPDATE]
      scope: Namespaced
    - apiGroups: [batch]
      apiVersions: [v1]
      resources: [jobs, cronjobs]
      operations: [CREATE, UPDATE]
      scope: Namespaced
    - apiGroups: [""]
      apiVersions: [v1]
      resources: [replicationcontrollers, pods, pods/ephemeralcontainers]
      operations: [CREATE, UPDATE]
      scope: Namespaced
  # Equivalent: a workload written through any other served version is converted and still
  # judged; Exact would let a future apps/v2 bypass the webhook.
  matchPolicy: Equivalent
  # The ledger append is a side effect, skipped for dry-run requests.
  sideEffects: NoneOnDryRun
  failurePolicy: {{ .Values.webhook.failurePolicy }}
  timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
  # Only the immutable, API-server-set kubernetes.io/metadata.name label decides what is
  # exempt; there is deliberately no objectSelector and no opt-out label.
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ include "pc.exemptNamespaces" . }}
{{- end }}
