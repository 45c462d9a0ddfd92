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

{{/* The Service of one NameServer: apogee.nameserverName (list $ 0). */}}
{{- define "apogee.nameserverName" -}}
{{- printf "%s-nameserver-%d" (include "apogee.fullname" (index . 0)) (int (index . 1)) -}}
{{- end -}}

{{/* The NameServers' addresses, comma-separated: one stable Service name per NameServer
     (a broker registers with every NameServer). */}}
{{- define "apogee.nameservers" -}}
{{- $root := . -}}
{{- $list := list -}}
{{- range $i := until (int .Values.nameserver.replicas) -}}
{{- $list = append $list (printf "%s.%s.svc.%s:9876" (include "apogee.nameserverName" (list $root $i)) $root.Release.Namespace $root.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{/* The image, its tag defaulting to the chart's appVersion. */}}
{{- define "apogee.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
