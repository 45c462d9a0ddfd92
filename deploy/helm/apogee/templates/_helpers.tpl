{{/* The name prefix of every object. */}}
{{- define "apogee.fullname" -}}
{{- printf "%s-apogee" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "apogee.labels" -}}
app.kubernetes.io/name: apogee
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The NameServers' addresses, comma-separated (one stable name per NameServer pod). */}}
{{- define "apogee.nameservers" -}}
{{- $fullname := include "apogee.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $list := list -}}
{{- range $i := until (int .Values.nameserver.replicas) -}}
{{- $list = append $list (printf "%s-nameserver-%d.%s-nameserver.%s.svc:9876" $fullname $i $fullname $ns) -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{- define "apogee.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
