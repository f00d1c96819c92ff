{{/*
Labels of every object: the name, the component (when given) and kustomize's
`app.kubernetes.io/part-of: the0` (k8s/kustomization.yaml `labels`). Call with the component:
  {{ include "the0-k8s.labels" "worker" }}   or   {{ include "the0-k8s.labels" "" }}
*/}}
{{- define "the0-k8s.labels" -}}
{{ include "the0-k8s.selectorLabels" . }}
app.kubernetes.io/part-of: the0
{{- end }}

{{/*
Selector labels (and pod template labels): without part-of, as kustomize leaves selectors alone
(`includeSelectors: false`).
*/}}
{{- define "the0-k8s.selectorLabels" -}}
app.kubernetes.io/name: the0-k8s
{{- with . }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "the0-k8s.namespace" -}}
{{ .Values.namespace.name }}
{{- end }}

{{/* The Secret every pod reads its credentials from. */}}
{{- define "the0-k8s.secretName" -}}
{{ .Values.secret.existingSecret | default "the0-k8s" }}
{{- end }}

{{/* The container's image (and pull policy, when one is set). */}}
{{- define "the0-k8s.image" -}}
{{- if .Values.image.digest -}}
image: {{ printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else -}}
image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/* Every pod we ship passes PodSecurity `restricted`: uid 10001, non-root, seccomp. */}}
{{- define "the0-k8s.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* Every container: no escalation, read-only root filesystem, no capabilities. */}}
{{- define "the0-k8s.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities: {drop: ["ALL"]}
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* The writable /tmp of every container (the root filesystem is read-only). */}}
{{- define "the0-k8s.tmpMount" -}}
volumeMounts:
  - {name: tmp, mountPath: /tmp}
{{- end }}

{{- define "the0-k8s.tmpVolume" -}}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 64Mi}
{{- end }}
