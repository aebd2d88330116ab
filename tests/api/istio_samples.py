"""Valid and invalid Istio documents on which meshpilot's models and the CRD schemas must agree.

Each sample is (id, valid, yaml). ``valid`` is what a real API server with Istio 1.30.3's CRDs
answers (the oracle confirms it in the tests), so the agreement test can't pass by both sides
accepting everything.
"""

from __future__ import annotations

SAMPLES: list[tuple[str, bool, str]] = [
    # --- VirtualService --------------------------------------------------------------------
    (
        "vs-canary",
        True,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productcatalog, namespace: production}
spec:
  hosts: [productcatalog]
  http:
  - name: canary
    match:
    - headers: {x-canary: {exact: "true"}}
      uri: {prefix: /api}
      queryParams: {debug: {regex: "^1$"}}
      ignoreUriCase: true
    route:
    - destination: {host: productcatalog, subset: v2, port: {number: 80}}
      weight: 100
  - route:
    - destination: {host: productcatalog, subset: v1}
      weight: 90
      headers:
        request: {set: {x-version: v1}}
        response: {remove: [server]}
    - destination: {host: productcatalog, subset: v2}
      weight: 10
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset"}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 1.5}}
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 5}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET]
      maxAge: 24h
    rewrite: {uri: /v1}
""",
    ),
    (
        "vs-tcp-tls-delegate",
        True,
        """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: edge, namespace: production}
spec:
  hosts: ["*.example.com"]
  gateways: [istio-system/ingress, mesh]
  tls:
  - match: [{sniHosts: [a.example.com], port: 443}]
    route: [{destination: {host: a.production.svc.cluster.local}}]
  tcp:
  - match: [{port: 5432, sourceLabels: {app: api}}]
    route: [{destination: {host: db, port: {number: 5432}}, weight: 100}]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews, namespace: production}
  - directResponse: {status: 418, body: {string: teapot}}
  - redirect: {uri: /new, derivePort: FROM_REQUEST_PORT, redirectCode: 301}
""",
    ),
    (
        "vs-weight-not-integer",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: ten
""",
    ),
    (
        "vs-unknown-field",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 100
""",
    ),
    (
        "vs-stringmatch-two-kinds",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /a, prefix: /b}}]
    route: [{destination: {host: reviews}}]
""",
    ),
    (
        "vs-redirect-port-and-derive",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - redirect: {uri: /x, port: 8080, derivePort: FROM_PROTOCOL_DEFAULT}
""",
    ),
    (
        "vs-timeout-not-duration",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: r}}]
    timeout: five seconds
""",
    ),
    (
        "vs-retry-timeout-below-1ms",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: r}}]
    retries: {attempts: 2, perTryTimeout: 0s}
""",
    ),
    (
        "vs-tls-match-without-sni",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  tls:
  - match: [{port: 443}]
    route: [{destination: {host: r}}]
""",
    ),
    (
        "vs-destination-without-host",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {subset: v1}}]
""",
    ),
    (
        "vs-fault-two-delays",
        False,
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: r}}]
    fault: {delay: {fixedDelay: 1s, exponentialDelay: 2s}}
""",
    ),
    # --- DestinationRule -------------------------------------------------------------------
    (
        "dr-full",
        True,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productcatalog, namespace: production}
spec:
  host: productcatalog.production.svc.cluster.local
  exportTo: ["."]
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s}, ringHash: {minimumRingSize: 1024}}
      localityLbSetting:
        enabled: true
        failover: [{from: us-east, to: us-west}]
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}}
      http: {http1MaxPendingRequests: 50, maxRequestsPerConnection: 10, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 60s, minimumPercent: 10}}
""",
    ),
    (
        "dr-missing-host",
        False,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  subsets: [{name: v1, labels: {version: v1}}]
""",
    ),
    (
        "dr-simple-and-consistent-hash",
        False,
        """
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy:
    loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}
""",
    ),
    (
        "dr-hash-two-keys",
        False,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x-user}}
""",
    ),
    (
        "dr-bad-tls-mode",
        False,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy: {tls: {mode: STRICT}}
""",
    ),
    (
        "dr-subset-without-name",
        False,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  subsets: [{labels: {version: v1}}]
""",
    ),
    (
        "dr-tunnel-without-port",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy: {tunnel: {targetHost: proxy.example.com}}
""",
    ),
    (
        "dr-workload-selector-wildcard",
        False,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  workloadSelector: {matchLabels: {app: "*"}}
""",
    ),
    # --- ServiceEntry ----------------------------------------------------------------------
    (
        "se-static-endpoints",
        True,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: production}
spec:
  hosts: [db.internal]
  addresses: [10.0.0.0/24]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 5432, name: tcp-postgres, protocol: TCP, targetPort: 15432}
  endpoints:
  - {address: 10.0.0.5, labels: {role: primary}, ports: {tcp-postgres: 5433}, weight: 1}
  - {address: "unix:///var/run/db.sock"}
""",
    ),
    (
        "se-missing-hosts",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  ports: [{number: 80, name: http}]
""",
    ),
    (
        "se-wildcard-host",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: ["*"]
""",
    ),
    (
        "se-cidr-with-dns",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.example.com]
  addresses: [10.1.0.0/16]
  resolution: DNS
""",
    ),
    (
        "se-none-with-endpoints",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.example.com]
  endpoints: [{address: 1.2.3.4}]
""",
    ),
    (
        "se-duplicate-port-number",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.example.com]
  ports: [{number: 80, name: http}, {number: 80, name: http2}]
""",
    ),
    (
        "se-port-zero",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.example.com]
  ports: [{number: 0, name: http}]
""",
    ),
    (
        "se-dns-round-robin-two-endpoints",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.example.com]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: a.example.com}, {address: b.example.com}]
""",
    ),
    (
        "se-no-spec",
        False,
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
""",
    ),
    # --- Gateway ---------------------------------------------------------------------------
    (
        "gw-https",
        True,
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [production/shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_2}
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
""",
    ),
    (
        "gw-port-without-name",
        False,
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  servers: [{port: {number: 80, protocol: HTTP}, hosts: ["*"]}]
""",
    ),
    (
        "gw-credential-name-and-names",
        False,
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}
""",
    ),
    (
        "gw-port-number-as-string",
        False,
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  servers: [{port: {number: "80", name: http, protocol: HTTP}, hosts: ["*"]}]
""",
    ),
    # --- Sidecar ---------------------------------------------------------------------------
    (
        "sidecar-egress",
        True,
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: production}
spec:
  workloadSelector: {labels: {app: productcatalog}}
  ingress:
  - port: {number: 8080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  egress:
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
    ),
    (
        "sidecar-egress-without-hosts",
        False,
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec:
  egress: [{port: {number: 80}}]
""",
    ),
    (
        "sidecar-bad-outbound-mode",
        False,
        """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: s}
spec:
  outboundTrafficPolicy: {mode: DENY_ALL}
""",
    ),
    # --- WorkloadEntry / WorkloadGroup -----------------------------------------------------
    (
        "we-vm",
        True,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: production}
spec:
  address: 10.1.2.3
  ports: {http: 8080}
  labels: {app: legacy}
  serviceAccount: legacy
  network: vm-network
  locality: us-east/zone-a
""",
    ),
    (
        "we-no-address",
        False,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  labels: {app: legacy}
""",
    ),
    (
        "we-uds-with-ports",
        False,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: unix:///var/run/app.sock
  ports: {http: 8080}
""",
    ),
    (
        "we-port-out-of-range",
        False,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: 10.1.2.3
  ports: {http: 70000}
""",
    ),
    (
        "wg-probe",
        True,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: production}
spec:
  metadata: {labels: {app: legacy}}
  template: {serviceAccount: legacy, ports: {http: 8080}}
  probe:
    periodSeconds: 5
    httpGet: {path: /ready, port: 8080, scheme: HTTP}
""",
    ),
    (
        "wg-two-probe-handlers",
        False,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy}
spec:
  template: {serviceAccount: legacy}
  probe: {httpGet: {port: 8080}, tcpSocket: {port: 8080}}
""",
    ),
    (
        "wg-missing-template",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadGroup
metadata: {name: legacy}
spec:
  metadata: {labels: {app: legacy}}
""",
    ),
    (
        "wg-probe-bad-scheme",
        False,
        """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy}
spec:
  template: {}
  probe: {httpGet: {port: 8080, scheme: FTP}}
""",
    ),
    # --- AuthorizationPolicy ---------------------------------------------------------------
    (
        "ap-allow",
        True,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: production}
spec:
  selector: {matchLabels: {app: productcatalog}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/frontend/sa/frontend"]}
    - source: {namespaces: [monitoring], notIpBlocks: [10.0.0.0/8]}
    to:
    - operation: {methods: [GET], paths: ["/api/*"], ports: ["8080"]}
    when:
    - key: request.headers[x-token]
      values: [secret]
""",
    ),
    (
        "ap-empty-spec",
        True,
        """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: production}
spec: {}
""",
    ),
    (
        "ap-bad-action",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  action: REJECT
""",
    ),
    (
        "ap-service-accounts-with-principals",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
  - from:
    - source: {serviceAccounts: [production/frontend], principals: [x]}
""",
    ),
    (
        "ap-selector-and-target-ref",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  selector: {matchLabels: {app: x}}
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}
""",
    ),
    (
        "ap-condition-without-key",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules: [{when: [{values: [x]}]}]
""",
    ),
    (
        "ap-from-not-a-list",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
  - from:
      source: {principals: [x]}
""",
    ),
    (
        "ap-target-ref-cross-namespace",
        False,
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  targetRefs: [{kind: Service, group: "", name: productcatalog, namespace: other}]
""",
    ),
    # --- PeerAuthentication ----------------------------------------------------------------
    (
        "pa-strict-with-port-exception",
        True,
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: production}
spec:
  selector: {matchLabels: {app: productcatalog}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "8081": {mode: PERMISSIVE}
""",
    ),
    (
        "pa-port-level-without-selector",
        False,
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
  portLevelMtls: {"8081": {mode: DISABLE}}
""",
    ),
    (
        "pa-port-zero",
        False,
        """
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: p}
spec:
  selector: {matchLabels: {app: x}}
  portLevelMtls: {"0": {mode: DISABLE}}
""",
    ),
    (
        "pa-bad-mode",
        False,
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p}
spec:
  mtls: {mode: ON}
""",
    ),
    # --- RequestAuthentication -------------------------------------------------------------
    (
        "ra-jwt",
        True,
        """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: production}
spec:
  selector: {matchLabels: {app: frontend}}
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks.json
    audiences: [shop]
    fromHeaders: [{name: Authorization, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-user, claim: sub}]
    forwardOriginalToken: true
    timeout: 5s
""",
    ),
    (
        "ra-jwks-uri-ftp",
        False,
        """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules: [{issuer: x, jwksUri: "ftp://example.com/keys"}]
""",
    ),
    (
        "ra-jwks-and-uri",
        False,
        """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules: [{issuer: x, jwksUri: "https://e.com/k", jwks: "{}"}]
""",
    ),
    (
        "ra-bad-claim-header",
        False,
        """
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules: [{issuer: x, outputClaimToHeaders: [{header: "x user", claim: sub}]}]
""",
    ),
    # --- Telemetry -------------------------------------------------------------------------
    (
        "telemetry-full",
        True,
        """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 1.0
    customTags:
      cluster: {literal: {value: local}}
      user: {header: {name: x-user, defaultValue: anonymous}}
  metrics:
  - providers: [{name: prometheus}]
    reportingInterval: 15s
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        app_version: {operation: UPSERT, value: "filter_state['version']"}
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400"}
""",
    ),
    (
        "telemetry-sampling-over-100",
        False,
        """
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: t}
spec:
  tracing: [{randomSamplingPercentage: 150}]
""",
    ),
    (
        "telemetry-remove-with-value",
        False,
        """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t}
spec:
  metrics:
  - overrides: [{tagOverrides: {x: {operation: REMOVE, value: y}}}]
""",
    ),
    (
        "telemetry-metric-and-custom",
        False,
        """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t}
spec:
  metrics:
  - overrides: [{match: {metric: REQUEST_COUNT, customMetric: my_metric}}]
""",
    ),
    (
        "telemetry-bad-metric",
        False,
        """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t}
spec:
  metrics:
  - overrides: [{match: {metric: REQUESTS}}]
""",
    ),
    # --- EnvoyFilter -----------------------------------------------------------------------
    (
        "ef-lua",
        True,
        """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: production}
spec:
  workloadSelector: {labels: {app: frontend}}
  priority: 10
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      proxy: {proxyVersion: "^1\\\\..*"}
      listener: {portNumber: 80, filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, inlineCode: "x", nothing: null}
  - applyTo: CLUSTER
    match: {cluster: {service: productcatalog.production.svc.cluster.local}}
    patch: {operation: MERGE, value: {connect_timeout: 1s}}
""",
    ),
    (
        "ef-bad-apply-to",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: e}
spec:
  configPatches: [{applyTo: HTTP_ROUTE_CONFIG}]
""",
    ),
    (
        "ef-waypoint-context-without-match",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: e}
spec:
  configPatches: [{applyTo: HTTP_FILTER, match: {context: WAYPOINT}}]
""",
    ),
    (
        "ef-listener-and-cluster",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: e}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {listener: {portNumber: 80}, cluster: {service: x}}
""",
    ),
    (
        "ef-selector-and-target-refs",
        False,
        """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: e}
spec:
  workloadSelector: {labels: {app: x}}
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
""",
    ),
    (
        "ef-served-only-as-v1alpha3",
        False,
        """
apiVersion: networking.istio.io/v1
kind: EnvoyFilter
metadata: {name: e}
spec: {}
""",
    ),
]

# Documents the CRD schema accepts but Istio's validating webhook (and meshpilot) rejects: the
# model is deliberately stricter here. Each entry: (id, yaml, the field path meshpilot names).
STRICTER_THAN_SCHEMA: list[tuple[str, str, str]] = [
    (
        "vs-weight-over-100",
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - {destination: {host: r, subset: v1}, weight: 150}
""",
        "spec.http[0].route[0].weight",
    ),
    (
        "vs-total-weight-zero",
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - {destination: {host: r, subset: v1}, weight: 0}
    - {destination: {host: r, subset: v2}, weight: 0}
""",
        "spec.http[0].route",
    ),
    (
        "dr-idle-timeout-not-a-duration",
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: soon}}}
""",
        "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
    ),
]
