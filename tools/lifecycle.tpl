# One request's life

From accept to log line, for an HTTPS request on a keep-alive connection to a route with an auth
policy and a rate limit. Anchors are `file:line`; each module's `//!` doc says more. Generated:
edit `tools/lifecycle.tpl`, then run `python3 tools/lifecycle.py . tools/lifecycle.tpl`.

1. **Accept.** Each worker runs one accept loop per listening socket ({{src/runtime/worker.rs|async fn accept_loop}}).
   `[server] listen` sockets come first, then `[[listener]]` ones in config order
   ({{src/runtime/mod.rs|let all: Vec<SocketAddr>}}). A worker holding more open connections than
   the least-loaded one (by more than 1 + 1/16) hands the new socket to it
   ({{src/runtime/spread.rs|pub fn target}}), which adopts it into its own ring
   ({{src/runtime/worker.rs|fn adopt}}). A listener with `proxy_protocol` reads the
   PROXY header first ({{src/net/proxy_protocol.rs|pub async fn read}}), and the client it names is the peer; a TLS listener's connection goes to
   `serve_tls` ({{src/runtime/worker.rs|async fn serve_tls}}).
2. **Handshake.** `TlsStream::accept` ({{src/net/tls.rs|pub async fn accept}}) runs the rustls server
   handshake within `handshake_timeout`, with the certificates of the config generation current at
   accept time: SNI picks the chain, ALPN is negotiated, a client certificate is verified when the
   listener asks for one. The session's facts (SNI, ALPN, version, resumption, client certificate)
   are read once into `TlsInfo` ({{src/net/stream.rs|pub fn of(session}}).
3. **Connection loop.** `proxy::serve` ({{src/proxy/mod.rs|pub async fn serve}}) owns the connection's
   buffers for its whole life and loops: read a head (`read_head`, {{src/proxy/mod.rs|async fn read_head}}),
   parse it strictly into spans over the buffer ({{src/http/head.rs|pub fn parse_request}}), take the
   worker's current generation, run the request, record it. (An HTTP/2 connection, h2c preface or
   ALPN `h2`, goes to `h2::server` instead ({{src/h2/server.rs|async fn run<}}): each stream is a task
   that writes its request as an HTTP/1.1 head and runs the steps below through `Stream::H2`,
   {{src/proxy/mod.rs|pub(crate) async fn serve_stream}}.)
4. **Pipeline.** `pipeline::run` ({{src/proxy/pipeline.rs|pub(super) async fn run}}): request id, trace
   span, the client address (a trusted proxy's forwarding header, {{src/proxy/realip.rs|pub fn client_ip(}})
   and the server-wide and listener IP rules, path normalisation (a path it refuses still meets the WAF of the
   route its raw form routes to, {{src/proxy/pipeline.rs|fn waf_on_raw_path}}), then the protocol-neutral
   `RequestView` ({{src/http/view.rs|pub fn h1(}}) and the route lookup ({{src/proxy/pipeline.rs|let route_idx = match gen}}).
5. **Filters, request phase.** The route's chain, compiled with the generation
   ({{src/proxy/filter.rs|pub fn chain(}}), runs in order ({{src/proxy/pipeline.rs|the request phase, in chain order}}):
   IP rules, the WAF's head rules ({{src/waf/mod.rs|pub fn inspect_head}}: raw path, decoded path, query
   arguments, cookies, inspected headers, each value in its decoded forms, {{src/waf/detect.rs|pub fn scan}}),
   client certificate, auth ({{src/proxy/filter.rs|let id = match gen.auth.authenticate}}), body size, rate limit
   ({{src/proxy/filter.rs|Filter::RateLimit =>}}), query and header validation ({{src/validate/params.rs|pub fn check_query}}),
   header transforms rendered from the request ({{src/transform/headers.rs|pub fn render(}}, values from
   {{src/proxy/source.rs|impl Source for RequestValues}}) and a `?fields=` selection.
   A refusal goes to `answer` (step 9). Then, on routes whose filters read bodies, the request_body
   phase ({{src/proxy/inspect.rs|pub(super) async fn body_phase}}): the body is read behind the head up to
   its cap (100 Continue first when asked), and the WAF's body rules ({{src/waf/mod.rs|pub fn inspect_body}})
   and the JSON Schema ({{src/validate/schema.rs|pub fn check}}) look at it; the raw bytes stay in the
   buffer and go upstream as a body that came with the head (or, with `request_body`, the transformed
   body in their place).
   On a route with `cache`, a GET or HEAD then meets the cache ({{src/proxy/cache.rs|pub(super) async fn serve}}):
   the key is built while the view is at hand ({{src/proxy/cache.rs|pub(super) fn prepare}}), a fresh entry
   (this worker's store, else the shared tier in Redis) answers at once, a stale one answers while a
   background refresh runs, and a miss waits for a concurrent one of the same key or goes on to the
   target collecting the response for the store ({{src/proxy/cache.rs|pub(super) fn complete}}: 304 to
   our validators refreshes the entry, a 5xx may be answered with a stale one).
   On a route with `aggregate`, the target is the fan-out instead ({{src/proxy/aggregate.rs|pub(super) async fn run}}):
   every part rendered and sent at once through `subrequest::fetch` ({{src/proxy/subrequest.rs|pub(crate) async fn fetch}}),
   documents merged into one ({{src/transform/merge.rs|pub fn merge}}).
6. **Target.** `Target::Upstream` ({{src/proxy/target.rs|pub(super) async fn upstream}}) first takes
   the route's bulkhead slots ({{src/proxy/bulkhead.rs|pub async fn enter}}: route, shared pools,
   upstream; a full one queues or refuses), asks the circuit breaker ({{src/upstream/mod.rs|pub fn breaker_admit}})
   and the adaptive limit ({{src/upstream/mod.rs|pub fn adaptive_admit}}); a refusal is the route's
   fallback or a 503 at once. Then it writes the upstream
   head ({{src/http/rewrite.rs|pub fn write_upstream_request}}: hop-by-hop fields dropped, X-Forwarded-*,
   identity and client-certificate fields set by the gateway only) and the body bytes that came with it.
7. **Exchange.** `exchange::exchange` ({{src/proxy/exchange.rs|pub(crate) async fn exchange}}): the balancer
   picks an endpoint ({{src/upstream/balance.rs|pub fn pick(}}: passive ejections, outlier ejections and
   the health prober's verdicts, {{src/upstream/probe.rs|async fn probe(}}, all count; slow start
   ramps a returning endpoint; the endpoints are the generation's, which for `dns_refresh = "ttl"`
   upstreams the `coregate-discovery` thread keeps current, {{src/discovery/mod.rs|fn refresh(}}), `checkout` ({{src/proxy/exchange.rs|async fn checkout}}) hands out a stream on a
   pooled HTTP/2 connection (`protocol = "http2"|"auto"`, {{src/h2/client.rs|pub fn take}}; the request
   then goes through the h2 byte adapter, {{src/h2/call.rs|pub struct H2Call}}) or an idle HTTP/1.1
   connection, or `connect` opens one (TLS to the upstream when it has `tls`, ALPN choosing h2 under
   `auto`, {{src/proxy/exchange.rs|async fn connect}}), the request and the rest of its body are sent,
   and the response head is read while the client socket is watched for a close. A failed try is
   retried when the retry policy and its budget allow ({{src/upstream/retry.rs|pub fn retry(}}); a slow
   GET may be hedged ({{src/proxy/hedge.rs|pub(crate) async fn hedged}}).
8. **Response.** The response phase of the filters that ran adds its header lines
   ({{src/proxy/target.rs|super::response_phase}}), then `relay::response`
   ({{src/proxy/relay.rs|pub(crate) async fn response}}) relays head and body into the target's sink
   ({{src/proxy/sink.rs|pub(crate) enum Sink}}): straight to the client, or, on a route whose filters
   need the body (`response_fields`, `response_body`, `?fields=`) or a cache fill, into a buffer that
   the response-body phase rewrites before
   `relay::deliver` ({{src/proxy/relay.rs|pub(crate) async fn deliver}}) sends it. A clean
   upstream connection goes back to the pool.
9. **The gateway's own answers.** Every 4xx/5xx the gateway makes itself leaves through `answer`
   ({{src/proxy/mod.rs|async fn answer(}}): response phase, `Reply` rendered by `render_h1`
   ({{src/http/respond.rs|pub fn render_h1(}}), keep-alive decided by how much of the request was read.
10. **Record.** `record::finish` ({{src/proxy/record.rs|pub(super) fn finish(}}) counts the request once
    (route and upstream counters, latency histograms) and appends one access-log line to the worker's
    buffer, which a writer thread flushes; with `[tracing]`, a sampled request's server span is
    encoded into the worker's span buffer ({{src/otlp/mod.rs|pub fn record(}}), which the
    `coregate-otlp` thread exports to the collector. The loop then reads the next head; on close, a TLS
    connection sends `close_notify` ({{src/net/stream.rs|pub async fn close(}}).
