{{/* Names --------------------------------------------------------------------------------- */}}

{{- define "basement.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix; component names append -signal, -sfu, -redis (so keep room for them). */}}
{{- define "basement.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "basement.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "basement.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "basement.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "basement.redisName" -}}
{{- printf "%s-redis" (include "basement.fullname" .) -}}
{{- end -}}

{{/* Labels: call with (dict "ctx" $ "component" "sfu") --------------------------------------- */}}

{{- define "basement.selectorLabels" -}}
app.kubernetes.io/name: {{ include "basement.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "basement.labels" -}}
helm.sh/chart: {{ include "basement.chart" .ctx }}
{{ include "basement.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: basement
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "basement.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Secrets ------------------------------------------------------------------------------- */}}

{{- define "basement.grantSecretName" -}}
{{- default (printf "%s-grant" (include "basement.fullname" .)) .Values.grantSecret.existingSecret -}}
{{- end -}}

{{- define "basement.turnSecretName" -}}
{{- default (printf "%s-turn" (include "basement.fullname" .)) .Values.turn.secret.existingSecret -}}
{{- end -}}

{{- define "basement.redisPasswordSecretName" -}}
{{- default (printf "%s-redis-auth" (include "basement.fullname" .)) .Values.redis.bundled.auth.existingSecret -}}
{{- end -}}

{{/* Where Basement pods find the Redis CA (redis.tls.existingSecret, key ca.crt). */}}
{{- define "basement.redisCaDir" -}}/etc/basement/redis-ca{{- end -}}

{{- define "basement.redisCaVolume" -}}
{{- if and .Values.redis.tls.enabled .Values.redis.tls.existingSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.tls.existingSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "basement.redisCaMount" -}}
{{- if and .Values.redis.tls.enabled .Values.redis.tls.existingSecret }}
- name: redis-ca
  mountPath: {{ include "basement.redisCaDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "basement.writerSecretName" -}}
{{- default (printf "%s-writer" (include "basement.fullname" .)) .Values.chain.writerKey.existingSecret -}}
{{- end -}}

{{/* Value checks the schema cannot express; included by every workload template. ------- */}}
{{- define "basement.validate" -}}
{{- $r := .Values.redis -}}
{{- $external := or $r.external.url $r.external.existingSecret -}}
{{- if and $r.bundled.enabled $external -}}
{{- fail "redis: choose one: the bundled Redis (redis.bundled.enabled=true) or an external one (redis.external.url / redis.external.existingSecret), not both" -}}
{{- end -}}
{{- if not (or $r.bundled.enabled $external) -}}
{{- fail "redis: no Redis configured: set redis.bundled.enabled=true, or redis.external.url, or redis.external.existingSecret" -}}
{{- end -}}
{{- if and $r.external.url $r.external.existingSecret -}}
{{- fail "redis.external: set url or existingSecret, not both" -}}
{{- end -}}
{{- if and $r.bundled.enabled $r.tls.enabled (not $r.tls.existingSecret) -}}
{{- fail "redis.tls.enabled with the bundled Redis needs redis.tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt for the Redis Service name" -}}
{{- end -}}
{{- if and $r.tls.enabled $r.external.url (not (hasPrefix "rediss://" $r.external.url)) -}}
{{- fail "redis.tls.enabled needs a rediss:// redis.external.url" -}}
{{- end -}}
{{- if and $r.external.url (regexMatch "^rediss?://[^/]*:[^/@]*@" $r.external.url) -}}
{{- fail "redis.external.url carries a password, which would sit in the pod spec: put the URL in a Secret (redis.external.existingSecret) or the password in redis.external.passwordSecret" -}}
{{- end -}}
{{- $ing := .Values.signal.ingress -}}
{{- if and $ing.enabled .Values.admin.enabled (not $ing.exposeAdmin) -}}
{{- range $ing.hosts -}}
{{- range .paths -}}
{{- if or (and (ne .pathType "Exact") (eq (trimSuffix "/" .path) "")) (hasPrefix "/admin" .path) -}}
{{- fail (printf "signal.ingress: path %s (%s) routes the admin API (/admin) to the public ingress; omit `paths` to route only the public paths, or set signal.ingress.exposeAdmin=true to expose it deliberately" .path .pathType) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.grantSecret.existingSecret) (not .Values.grantSecret.generate) -}}
{{- fail "grantSecret: every pod must share one grant key: set grantSecret.existingSecret (a Secret you created) or grantSecret.generate=true" -}}
{{- end -}}
{{- if and .Values.admin.enabled (not .Values.admin.existingSecret) -}}
{{- fail "admin.enabled=true needs admin.existingSecret: the name of a Secret holding the admin API key under admin.key (the chart never invents or stores one)" -}}
{{- end -}}
{{- $w := .Values.chain.writerKey -}}
{{- if and $w.create $w.existingSecret -}}
{{- fail "chain.writerKey: set existingSecret or create=true, not both" -}}
{{- end -}}
{{- if and $w.create (not $w.value) -}}
{{- fail "chain.writerKey.create=true needs chain.writerKey.value (better: create the Secret yourself and set chain.writerKey.existingSecret)" -}}
{{- end -}}
{{- if and $w.value (not $w.create) -}}
{{- fail "chain.writerKey.value is set but chain.writerKey.create is false: the chart puts a private key in a Secret only on explicit opt-in (create=true); prefer chain.writerKey.existingSecret" -}}
{{- end -}}
{{- if and (eq .Values.chain.mode "embedded") (or .Values.signal.autoscaling.enabled (gt (int .Values.signal.replicas) 1)) -}}
{{- fail (printf "chain.mode=embedded runs one in-process chain per signalling pod, so %s would give each its own token balances and session log: set signal.replicas=1 (autoscaling off), or chain.mode=rpc with chain.rpcUrl for more" (ternary "autoscaling" (printf "signal.replicas=%d" (int .Values.signal.replicas)) .Values.signal.autoscaling.enabled)) -}}
{{- end -}}
{{- if and .Values.sessions.pinService (not (and .Values.sessions.ipfsApi .Values.sessions.pinToken.existingSecret)) -}}
{{- fail "sessions.pinService needs sessions.ipfsApi (the node the service fetches documents from) and sessions.pinToken.existingSecret (a Secret holding the service's access token under sessions.pinToken.key)" -}}
{{- end -}}
{{- if eq .Values.chain.mode "rpc" -}}
{{- if not .Values.chain.rpcUrl -}}
{{- fail "chain.mode=rpc needs chain.rpcUrl" -}}
{{- end -}}
{{- if not (or $w.existingSecret $w.create) -}}
{{- fail "chain.mode=rpc needs the session-log writer key: set chain.writerKey.existingSecret to a Secret holding it under chain.writerKey.key (kubectl create secret generic basement-writer --from-file=writer-key=./key.hex)" -}}
{{- end -}}
{{- end -}}
{{- $s := .Values.sfu -}}
{{- $cpuWorkers := eq (toString $s.workers) "cpuLimit" -}}
{{- if $cpuWorkers -}}
{{- if not (and $s.resources $s.resources.limits $s.resources.limits.cpu) -}}
{{- fail "sfu.workers=cpuLimit needs sfu.resources.limits.cpu: the workers are the container's CPU limit in cores" -}}
{{- end -}}
{{- if or $s.udpPort $s.tcpPort $s.relayPort -}}
{{- fail "sfu.workers=cpuLimit needs the RTP range (sfu.udpPort, sfu.tcpPort and sfu.relayPort 0): each worker's own UDP/TCP port would have to be declared for a count known only at run time; give sfu.workers as a number instead" -}}
{{- end -}}
{{- else if lt (int $s.workers) 1 -}}
{{- fail (printf "sfu.workers: %v is not a number of at least 1 or \"cpuLimit\"" $s.workers) -}}
{{- end -}}
{{- /* media processes: processes x workers (each worker has its own ports) */ -}}
{{- $mp := mul (int $s.processes) (ternary 1 (int $s.workers) $cpuWorkers) -}}
{{- if and $s.udpPort (lt (int $s.udpPort) 1024) -}}
{{- fail (printf "sfu: udpPort %d is below 1024 (0 = the rtpPortMin-rtpPortMax range)" (int $s.udpPort)) -}}
{{- end -}}
{{- if gt (add (int $s.udpPort) (sub $mp 1)) 65535 -}}
{{- fail (printf "sfu: udpPort %d + %d processes goes past 65535" (int $s.udpPort) $mp) -}}
{{- end -}}
{{- $last := add (int $s.port) (sub (int $s.processes) 1) -}}
{{- $lastMetrics := add (int $s.metricsPort) (sub (int $s.processes) 1) -}}
{{- if and (le (int $s.port) (int $lastMetrics)) (le (int $s.metricsPort) (int $last)) -}}
{{- fail (printf "sfu: HTTP ports %d-%d overlap metrics ports %d-%d" (int $s.port) $last (int $s.metricsPort) $lastMetrics) -}}
{{- end -}}
{{- if $s.tcpPort -}}
{{- $lastTcp := add (int $s.tcpPort) (sub $mp 1) -}}
{{- if lt (int $s.tcpPort) 1024 -}}
{{- fail (printf "sfu: tcpPort %d is below 1024 (0 = no ICE over TCP)" (int $s.tcpPort)) -}}
{{- end -}}
{{- if gt $lastTcp 65535 -}}
{{- fail (printf "sfu: tcpPort %d + %d processes goes past 65535" (int $s.tcpPort) $mp) -}}
{{- end -}}
{{- if and (le (int $s.tcpPort) $last) (le (int $s.port) $lastTcp) -}}
{{- fail (printf "sfu: ICE-TCP ports %d-%d (tcpPort) overlap HTTP ports %d-%d" (int $s.tcpPort) $lastTcp (int $s.port) $last) -}}
{{- end -}}
{{- if and (le (int $s.tcpPort) $lastMetrics) (le (int $s.metricsPort) $lastTcp) -}}
{{- fail (printf "sfu: ICE-TCP ports %d-%d (tcpPort) overlap metrics ports %d-%d" (int $s.tcpPort) $lastTcp (int $s.metricsPort) $lastMetrics) -}}
{{- end -}}
{{- end -}}
{{- if not $s.hostNetwork -}}
{{- if not $s.udpPort -}}
{{- fail "sfu.hostNetwork=false needs sfu.udpPort: off the host network media reaches the pod through host ports (hostPort), and a UDP range (rtpPortMin-rtpPortMax) cannot go through hostPort or a Service; set sfu.udpPort (one UDP port per process)" -}}
{{- end -}}
{{- end -}}
{{- if not $s.udpPort -}}
{{- if gt (int $s.rtpPortMin) (int $s.rtpPortMax) -}}
{{- fail (printf "sfu: rtpPortMin (%d) must be <= rtpPortMax (%d)" (int $s.rtpPortMin) (int $s.rtpPortMax)) -}}
{{- end -}}
{{- $span := add1 (sub (int $s.rtpPortMax) (int $s.rtpPortMin)) -}}
{{- if lt (int (div $span $mp)) 10 -}}
{{- fail (printf "sfu: the RTP range %d-%d gives fewer than 10 ports to each of the %d processes" (int $s.rtpPortMin) (int $s.rtpPortMax) $mp) -}}
{{- end -}}
{{- if and (le (int $s.rtpPortMin) $last) (le (int $s.port) (int $s.rtpPortMax)) -}}
{{- fail "sfu: the HTTP ports overlap the RTP range" -}}
{{- end -}}
{{- if and (le (int $s.rtpPortMin) $lastMetrics) (le (int $s.metricsPort) (int $s.rtpPortMax)) -}}
{{- fail "sfu: the metrics ports overlap the RTP range" -}}
{{- end -}}
{{- end -}}
{{- if le (int $s.terminationGracePeriodSeconds) (int $s.drainMarginSeconds) -}}
{{- fail "sfu: terminationGracePeriodSeconds must be larger than drainMarginSeconds" -}}
{{- end -}}
{{- $t := .Values.turn -}}
{{- if $t.enabled -}}
{{- if not $t.host -}}
{{- fail "turn.enabled=true needs turn.host: the DNS name or address clients reach the TURN nodes at" -}}
{{- end -}}
{{- if gt (int $t.relayPortMin) (int $t.relayPortMax) -}}
{{- fail (printf "turn: relayPortMin (%d) must be <= relayPortMax (%d)" (int $t.relayPortMin) (int $t.relayPortMax)) -}}
{{- end -}}
{{- if $s.udpPort -}}
{{- $lastUdp := add (int $s.udpPort) (sub $mp 1) -}}
{{- if and (le (int $t.relayPortMin) $lastUdp) (le (int $s.udpPort) (int $t.relayPortMax)) -}}
{{- fail "turn: the relay port range overlaps sfu.udpPort (a node may run both)" -}}
{{- end -}}
{{- else -}}
{{- if and (le (int $t.relayPortMin) (int $s.rtpPortMax)) (le (int $s.rtpPortMin) (int $t.relayPortMax)) -}}
{{- fail "turn: the relay port range overlaps sfu.rtpPortMin-rtpPortMax (a node may run both)" -}}
{{- end -}}
{{- end -}}
{{- if $s.tcpPort -}}
{{- /* coturn (host network) holds TCP on port and, with TLS, tlsPort; TCP relays (RFC 6062) take relay-range ports */ -}}
{{- $lastTcp := add (int $s.tcpPort) (sub $mp 1) -}}
{{- $turnTcp := list (int $t.port) -}}
{{- if $t.tlsSecret -}}
{{- $turnTcp = append $turnTcp (int $t.tlsPort) -}}
{{- end -}}
{{- range $turnTcp -}}
{{- if and (le (int $s.tcpPort) .) (le . $lastTcp) -}}
{{- fail (printf "turn: TCP port %d (coturn listens there) is one of sfu.tcpPort %d-%d (a node may run both)" . (int $s.tcpPort) $lastTcp) -}}
{{- end -}}
{{- end -}}
{{- if and (le (int $t.relayPortMin) $lastTcp) (le (int $s.tcpPort) (int $t.relayPortMax)) -}}
{{- fail "turn: the relay port range overlaps sfu.tcpPort (coturn relays TCP allocations from it too; a node may run both)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.signal.port) (int .Values.signal.metricsPort) -}}
{{- fail "signal: port and metricsPort must differ" -}}
{{- end -}}
{{- end -}}

{{/* Env shared by signalling and SFU pods: Redis URL, password and CA, and the grant key. The
password never goes into the URL: it arrives as BASEMENT_REDIS_PASSWORD from its Secret. ---- */}}
{{- define "basement.commonEnv" -}}
{{- $r := .Values.redis -}}
{{- if $r.bundled.enabled }}
{{- $host := printf "%s.%s.svc" (include "basement.redisName" .) .Release.Namespace }}
- name: BASEMENT_REDIS_URL
  value: {{ printf "%s://%s:%d/0" (ternary "rediss" "redis" $r.tls.enabled) $host (int $r.bundled.port) | quote }}
{{- if $r.bundled.auth.enabled }}
- name: BASEMENT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "basement.redisPasswordSecretName" . }}
      key: {{ $r.bundled.auth.key }}
{{- end }}
{{- else }}
{{- if $r.external.existingSecret }}
- name: BASEMENT_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $r.external.existingSecret }}
      key: {{ $r.external.key }}
{{- else }}
- name: BASEMENT_REDIS_URL
  value: {{ $r.external.url | quote }}
{{- end }}
{{- with $r.external.passwordSecret.existingSecret }}
- name: BASEMENT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $r.external.passwordSecret.key }}
{{- end }}
{{- end }}
{{- if and $r.tls.enabled $r.tls.existingSecret }}
- name: BASEMENT_REDIS_SSL_CA_CERTS
  value: {{ printf "%s/ca.crt" (include "basement.redisCaDir" .) | quote }}
{{- end }}
- name: BASEMENT_GRANT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "basement.grantSecretName" . }}
      key: {{ .Values.grantSecret.key }}
- name: BASEMENT_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{- define "basement.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if and .Values.signal.ingress.enabled .Values.signal.ingress.hosts -}}
{{- $h := (first .Values.signal.ingress.hosts).host -}}
{{- if .Values.signal.ingress.tls -}}
{{- printf "https://%s" $h -}}
{{- else -}}
{{- printf "http://%s" $h -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings both Basement workloads share. */}}
{{- define "basement.podCommon" -}}
serviceAccountName: {{ include "basement.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
