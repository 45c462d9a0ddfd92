{{/* The name prefix of every object: the release name, with "-apogee" unless it says
     apogee already (helm install apogee ... names the NameServers apogee-nameserver-N). */}}
{{- define "apogee.fullname" -}}
{{- if contains "apogee" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-apogee" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select this release's pods (a component label is added per kind). */}}
{{- define "apogee.selectorLabels" -}}
app.kubernetes.io/name: apogee
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "apogee.labels" -}}
{{ include "apogee.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The NameServers' StatefulSet (its pods are <this>-0, <this>-1, ...). */}}
{{- define "apogee.nameserverName" -}}
{{- printf "%s-nameserver" (include "apogee.fullname" .) -}}
{{- end -}}

{{/* The headless Service giving each NameServer pod its stable DNS name. */}}
{{- define "apogee.nameserverPeers" -}}
{{- printf "%s-nameserver-peers" (include "apogee.fullname" .) -}}
{{- end -}}

{{/* The gRPC address of NameServer pod i: apogee.nameserverAddress (list $ i). */}}
{{- define "apogee.nameserverAddress" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s:9876" (include "apogee.nameserverName" $root) (int (index . 1)) (include "apogee.nameserverPeers" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* The number of NameServers, checked: 1 to 7 (the controller's most voters). */}}
{{- define "apogee.nameserverReplicas" -}}
{{- $n := int .Values.nameserver.replicas -}}
{{- if or (lt $n 1) (gt $n 7) -}}
{{- fail (printf "nameserver.replicas is %d: from 1 to 7 (the controller's voters; 3 keep working with one down)" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* The NameServers' addresses, comma-separated: one stable pod DNS name per NameServer
     (a broker registers with every NameServer). */}}
{{- define "apogee.nameservers" -}}
{{- $root := . -}}
{{- $list := list -}}
{{- range $i := until (int (include "apogee.nameserverReplicas" $root)) -}}
{{- $list = append $list (include "apogee.nameserverAddress" (list $root $i)) -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{/* The controller's voters, comma-separated "node id=address": NameServer pod i is node
     i + 1. */}}
{{- define "apogee.controllerPeers" -}}
{{- $root := . -}}
{{- $list := list -}}
{{- range $i := until (int (include "apogee.nameserverReplicas" $root)) -}}
{{- $list = append $list (printf "%d=%s" (add $i 1) (include "apogee.nameserverAddress" (list $root $i))) -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{/* A pod's scheduling: nodeSelector, tolerations and the anti-affinity among the pods
     the labels select: apogee.scheduling (list $ .Values.broker <extra selector labels>).
     The component's own nodeSelector and tolerations win over the top-level ones. */}}
{{- define "apogee.scheduling" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $labels := index . 2 -}}
{{- with ($component.nodeSelector | default $root.Values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($component.tolerations | default $root.Values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" $labels) }}
{{- $spread := $component.antiAffinity | default "required" }}
{{- if eq $spread "required" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list $term) | nindent 6 }}
{{- else if eq $spread "preferred" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list (dict "weight" 100 "podAffinityTerm" $term)) | nindent 6 }}
{{- else if ne $spread "none" }}
{{- fail (printf "antiAffinity is %q: required, preferred or none" $spread) }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
{{- if kindIs "string" . }}
  - name: {{ . | quote }}
{{- else }}
  - {{ toYaml . | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The security settings of a server, as environment variables: apogee.securityEnv (list $
     "NAMESERVER") or (list $ "BROKER"). Files come from the Secrets apogee.securityVolumes
     mounts. */}}
{{- define "apogee.securityEnv" -}}
{{- $v := (index . 0).Values -}}
{{- $server := index . 1 -}}
{{- if $v.auth.enabled }}
{{- if not $v.clusterSecret.existingSecret }}
{{- fail "auth.enabled needs clusterSecret.existingSecret: the servers call each other with the cluster proof" }}
{{- end }}
{{- if not $v.auth.existingSecret }}
{{- fail "auth.enabled needs auth.existingSecret: the Secret holding the admin's secret key under admin.secret" }}
{{- end }}
- { name: APOGEE_{{ $server }}_SECURITY__AUTHENTICATION, value: "true" }
- { name: APOGEE_{{ $server }}_SECURITY__ADMIN_ACCESS_KEY, value: {{ $v.auth.adminAccessKey | quote }} }
- { name: APOGEE_{{ $server }}_SECURITY__ADMIN_SECRET_FILE, value: /etc/apogee/admin/admin.secret }
{{- else }}
# Pods listen on their network without authentication (docs/SECURITY.md): restrict access
# with NetworkPolicies, or set auth.enabled.
- { name: APOGEE_{{ $server }}_SECURITY__ALLOW_ANONYMOUS, value: "true" }
{{- end }}
{{- if $v.clusterSecret.existingSecret }}
- { name: APOGEE_{{ $server }}_SECURITY__CLUSTER_SECRET_FILE, value: /etc/apogee/secret/cluster.secret }
{{- end }}
{{- if $v.tls.existingSecret }}
- { name: APOGEE_{{ $server }}_TLS__CERT_FILE, value: /etc/apogee/tls/tls.crt }
- { name: APOGEE_{{ $server }}_TLS__KEY_FILE, value: /etc/apogee/tls/tls.key }
- { name: APOGEE_{{ $server }}_TLS__CA_FILE, value: /etc/apogee/tls/ca.crt }
{{- end }}
{{- end -}}

{{/* The mounts of the Secrets apogee.securityEnv names (empty without any). */}}
{{- define "apogee.securityMounts" -}}
{{- $v := .Values -}}
{{- if $v.clusterSecret.existingSecret }}
- { name: cluster-secret, mountPath: /etc/apogee/secret, readOnly: true }
{{- end }}
{{- if $v.auth.enabled }}
- { name: admin-secret, mountPath: /etc/apogee/admin, readOnly: true }
{{- end }}
{{- if $v.tls.existingSecret }}
- { name: tls, mountPath: /etc/apogee/tls, readOnly: true }
{{- end }}
{{- end -}}

{{/* The volumes of those Secrets: readable by the pods' group (fsGroup) only. */}}
{{- define "apogee.securityVolumes" -}}
{{- $v := .Values -}}
{{- if $v.clusterSecret.existingSecret }}
- name: cluster-secret
  secret: { secretName: {{ $v.clusterSecret.existingSecret | quote }}, defaultMode: 0440 }
{{- end }}
{{- if $v.auth.enabled }}
- name: admin-secret
  secret: { secretName: {{ $v.auth.existingSecret | quote }}, defaultMode: 0440 }
{{- end }}
{{- if $v.tls.existingSecret }}
- name: tls
  secret: { secretName: {{ $v.tls.existingSecret | quote }}, defaultMode: 0440 }
{{- end }}
{{- end -}}

{{/* The scheme of the HTTP endpoint (probes, scrapes): HTTPS with TLS. */}}
{{- define "apogee.httpScheme" -}}
{{- if .Values.tls.existingSecret }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{/* The image, its tag defaulting to the chart's appVersion. */}}
{{- define "apogee.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
