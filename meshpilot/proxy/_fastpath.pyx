# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled fast lane of the sidecar: plain HTTP/1.1 requests forwarded with no Python per byte.

Most requests through a sidecar are the same shape: a complete head (and any small body) in one
read, a route that names a cluster, a response with a length or chunks. For those, the interpreted
protocol classes in ``http.py`` spend most of their time in parser callbacks, header tuples and
attribute look-ups. This module handles exactly that shape in C: one pass finds the head's lines,
one allocation builds the upstream head, one pass frames the response. Routing, load balancing,
pools and Istio metrics stay the Python objects the rest of the proxy uses, so both lanes share
one configuration and one set of counters.

Anything else is not this module's business. Before it touches a request it decides whether the
request is plain; if not (HTTP/1.0, chunked or partial bodies, Expect, Upgrade, obs-fold, a route
that redirects or hashes on a cookie, passthrough, a head split across reads ...) it hands the
connection, with the bytes it holds, to
``http.DownstreamProtocol`` and steps aside for good. The fast parser therefore only has to
recognise strictly well-formed heads: whatever it does not accept goes to llhttp, which rejects
malformed input with Envoy's codes. It never accepts a head llhttp would reject.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy
from libc.stdio cimport snprintf
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import logging

log = logging.getLogger("meshpilot.proxy")

cdef enum:
    MAX_HEADERS = 100  # Envoy's default max_headers_count
    MAX_RESPONSE_HEAD = 64 * 1024
    PENDING_HIGH = 64 * 1024

# header kinds (what the lane does with a header)
cdef enum:
    H_KEEP = 0
    H_DROP = 1          # hop-by-hop, or re-made by the proxy
    H_HOST = 2
    H_RID = 3
    H_PEER = 4          # x-envoy-peer-metadata
    H_PEER_ID = 5       # x-envoy-peer-metadata-id

# plan kinds
cdef enum:
    P_SLOW = 0
    P_FORWARD = 1
    P_MATCH = 2         # the virtual host matches on headers, method or query: route per request

# response body framing
cdef enum:
    B_NONE = 0
    B_LENGTH = 1
    B_CHUNKED = 2
    B_CLOSE = 3

# chunked parser states
cdef enum:
    C_SIZE = 0
    C_SIZE_DIGITS = 1
    C_EXT = 2
    C_SIZE_LF = 3
    C_DATA = 4
    C_DATA_CR = 5
    C_DATA_LF = 6
    C_TRAILER = 7       # at the start of a trailer line (or the final CRLF)
    C_TRAILER_NAME = 8
    C_TRAILER_LF = 9
    C_FINAL_LF = 10
    C_DONE = 11
    C_EXT_VALUE = 12    # after '=': a value must follow
    C_TRAILER_VALUE = 13
    C_EXT_NAME = 14
    C_EXT_VALUE_TOKEN = 15
    C_EXT_QUOTED = 16
    C_EXT_QUOTED_ESCAPE = 17
    C_EXT_AFTER_QUOTE = 18


cdef struct Span:
    Py_ssize_t start
    Py_ssize_t end


cdef struct Head:
    Span method
    Span target
    int status
    int nheaders
    Span names[MAX_HEADERS]
    Span values[MAX_HEADERS]
    unsigned char kinds[MAX_HEADERS]
    int host
    int rid
    int peer
    long long content_length
    bint chunked
    bint close
    bint http10
    Py_ssize_t head_end


# --- character classes --------------------------------------------------------------------------

cdef unsigned char TCHAR[256]
cdef unsigned char AUTHCHAR[256]  # what an http:// target's authority may hold (llhttp refuses the rest)
cdef unsigned char LOWER[256]
cdef unsigned char HEXVAL[256]


cdef void _init_tables():
    cdef int c
    cdef bytes extra = b"!#$%&'*+-.^_`|~"
    cdef bytes auth = b"-._~!$&'()*+,;=:@[]%"
    for c in range(256):
        TCHAR[c] = 0
        AUTHCHAR[c] = 1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else 0
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        HEXVAL[c] = 255
    for c in range(48, 58):
        TCHAR[c] = 1
        HEXVAL[c] = c - 48
    for c in range(65, 91):
        TCHAR[c] = 1
    for c in range(97, 123):
        TCHAR[c] = 1
    for c in range(6):
        HEXVAL[65 + c] = 10 + c
        HEXVAL[97 + c] = 10 + c
    for c in extra:
        TCHAR[c] = 1
    for c in auth:
        AUTHCHAR[c] = 1


_init_tables()


cdef inline double now_mono() noexcept nogil:
    """CLOCK_MONOTONIC, the clock behind ``time.monotonic()``, without a Python call."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline bint name_is(const unsigned char* p, Span s, const char* want, Py_ssize_t n) noexcept:
    """Case-insensitive compare of a header name with a lowercase literal."""
    cdef Py_ssize_t i
    if s.end - s.start != n:
        return False
    for i in range(n):
        if LOWER[p[s.start + i]] != <unsigned char>want[i]:
            return False
    return True


cdef inline Py_ssize_t find_head_end(const unsigned char* p, Py_ssize_t n) noexcept:
    """Offset just past the first CRLFCRLF, or -1."""
    cdef Py_ssize_t i = 3
    while i < n:
        if p[i] == 10 and p[i - 1] == 13 and p[i - 2] == 10 and p[i - 3] == 13:
            return i + 1
        i += 1
    return -1


cdef int parse_header_lines(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, Head* h,
                            bint response) noexcept:
    """The header lines from ``i`` to ``end`` (which is just past the final CRLF). 0 or -1.

    Strict: a token name, a colon with no space before it, a value of visible characters, spaces
    and tabs (requests: no obs-text), CRLF line ends, no obs-fold."""
    cdef Py_ssize_t ns, ne, vs, ve
    cdef unsigned char c
    cdef int k
    h.nheaders = 0
    while i < end - 2:
        if h.nheaders == MAX_HEADERS:
            return -1
        ns = i
        while TCHAR[p[i]]:
            i += 1
        ne = i
        if ne == ns or p[i] != 58:  # ':'
            return -1
        i += 1
        while p[i] == 32 or p[i] == 9:
            i += 1
        vs = i
        while True:
            c = p[i]
            if c == 13:
                break
            if c < 32 and c != 9:
                return -1
            if c == 127 or (c >= 128 and not response):
                return -1
            i += 1
        ve = i
        if p[i + 1] != 10:
            return -1
        i += 2
        while ve > vs and (p[ve - 1] == 32 or p[ve - 1] == 9):
            ve -= 1
        k = h.nheaders
        h.names[k].start = ns
        h.names[k].end = ne
        h.values[k].start = vs
        h.values[k].end = ve
        h.kinds[k] = H_KEEP
        h.nheaders = k + 1
    return 0 if i == end - 2 else -1


cdef long long parse_length(const unsigned char* p, Span v) noexcept:
    """A Content-Length value: 1 to 15 digits; -1 otherwise."""
    cdef Py_ssize_t n = v.end - v.start, i
    cdef long long out = 0
    if n < 1 or n > 15:
        return -1
    for i in range(v.start, v.end):
        if not 48 <= p[i] <= 57:
            return -1
        out = out * 10 + (p[i] - 48)
    return out


cdef bint has_token(const unsigned char* p, Span v, const char* want, Py_ssize_t n) noexcept:
    """Whether a comma-separated header value (``close, x-foo``) lists ``want`` (lowercase)."""
    cdef Py_ssize_t i = v.start, start, end, k
    while i < v.end:
        while i < v.end and (p[i] == 32 or p[i] == 9 or p[i] == 44):
            i += 1
        start = i
        while i < v.end and p[i] != 44:
            i += 1
        end = i
        while end > start and (p[end - 1] == 32 or p[end - 1] == 9):
            end -= 1
        if end - start == n:
            for k in range(n):
                if LOWER[p[start + k]] != <unsigned char>want[k]:
                    break
            else:
                return True
    return False


cdef inline bint value_is(const unsigned char* p, Span v, const char* want, Py_ssize_t n) noexcept:
    return name_is(p, v, want, n)


cdef int classify_request(const unsigned char* p, Head* h) noexcept:
    """What each request header means to the lane; -1 when the request is not plain."""
    cdef int k
    cdef Span s
    cdef Py_ssize_t n
    h.host = h.rid = h.peer = -1
    h.content_length = -1
    h.close = False
    for k in range(h.nheaders):
        s = h.names[k]
        n = s.end - s.start
        if n == 4 and name_is(p, s, b"host", 4):
            if h.host >= 0:
                return -1
            h.host = k
            h.kinds[k] = H_HOST
        elif n == 14 and name_is(p, s, b"content-length", 14):
            if h.content_length >= 0:
                return -1
            h.content_length = parse_length(p, h.values[k])
            if h.content_length < 0:
                return -1
            h.kinds[k] = H_DROP
        elif n == 10 and name_is(p, s, b"connection", 10):
            if value_is(p, h.values[k], b"close", 5):
                h.close = True
            elif not value_is(p, h.values[k], b"keep-alive", 10):
                return -1
            h.kinds[k] = H_DROP
        elif n == 12 and name_is(p, s, b"x-request-id", 12):
            if h.rid >= 0:
                return -1
            h.rid = k
            h.kinds[k] = H_RID
        elif n == 21 and name_is(p, s, b"x-envoy-peer-metadata", 21):
            if h.peer >= 0:
                return -1
            h.peer = k
            h.kinds[k] = H_PEER
        elif n == 24 and name_is(p, s, b"x-envoy-peer-metadata-id", 24):
            h.kinds[k] = H_PEER_ID
        elif (n == 17 and name_is(p, s, b"transfer-encoding", 17)) or (
            n == 7 and name_is(p, s, b"upgrade", 7)) or (n == 6 and name_is(p, s, b"expect", 6)):
            return -1
        elif n == 16 and name_is(p, s, b"proxy-connection", 16):
            return -1  # llhttp reads it as Connection
        elif (n == 10 and name_is(p, s, b"keep-alive", 10)) or (n == 2 and name_is(p, s, b"te", 2)) or (
            n == 7 and name_is(p, s, b"trailer", 7)) or (
            n == 18 and name_is(p, s, b"proxy-authenticate", 18)) or (
            n == 19 and name_is(p, s, b"proxy-authorization", 19)):
            h.kinds[k] = H_DROP
    return 0


cdef bint plain_method(const unsigned char* p, Py_ssize_t n) noexcept:
    """GET HEAD POST PUT DELETE PATCH OPTIONS, exactly (CONNECT, TRACE and extension methods are
    the interpreted lane's)."""
    if n == 3:
        return memcmp(p, b"GET", 3) == 0 or memcmp(p, b"PUT", 3) == 0
    if n == 4:
        return memcmp(p, b"HEAD", 4) == 0 or memcmp(p, b"POST", 4) == 0
    if n == 5:
        return memcmp(p, b"PATCH", 5) == 0
    if n == 6:
        return memcmp(p, b"DELETE", 6) == 0
    return n == 7 and memcmp(p, b"OPTIONS", 7) == 0


cdef int parse_request(const unsigned char* p, Py_ssize_t n, Head* h) noexcept:
    """1: a complete, plain request head; 0: no complete head yet; -1: not plain."""
    cdef Py_ssize_t end = find_head_end(p, n), i = 0, a
    if end < 0:
        return 0
    while i < 8 and 65 <= p[i] <= 90:
        i += 1
    h.method.start = 0
    h.method.end = i
    if p[i] != 32 or not plain_method(p, i):
        return -1
    i += 1
    h.target.start = i
    while 33 <= p[i] <= 126:
        i += 1
    h.target.end = i
    if p[i] != 32 or i == h.target.start:
        return -1
    if p[h.target.start] != 47:  # '/': origin-form, or an absolute-form http:// target
        if i - h.target.start < 8 or memcmp(p + h.target.start, b"http://", 7) != 0:
            return -1
        a = h.target.start + 7
        while a < i and p[a] != 47:
            if not AUTHCHAR[p[a]]:
                return -1
            a += 1
    i += 1
    if end - i < 10 or memcmp(p + i, b"HTTP/1.1\r\n", 10) != 0:
        return -1
    h.head_end = end
    if parse_header_lines(p, i + 10, end, h, False) < 0:
        return -1
    return -1 if classify_request(p, h) < 0 else 1


cdef int parse_response(const unsigned char* p, Py_ssize_t n, Head* h) noexcept:
    """1: a complete response head; 0: not yet; -1: malformed (the upstream broke the protocol)."""
    cdef Py_ssize_t end = find_head_end(p, n), i, j
    cdef int k
    cdef Span s
    cdef Py_ssize_t ln
    if end < 0:
        return 0
    if end < 14 or memcmp(p, b"HTTP/1.", 7) != 0 or (p[7] != 49 and p[7] != 48) or p[8] != 32:
        return -1
    h.http10 = p[7] == 48
    if not (48 <= p[9] <= 57 and 48 <= p[10] <= 57 and 48 <= p[11] <= 57):
        return -1
    h.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    if h.status < 100:
        return -1
    i = 12
    if p[i] == 32:
        i += 1
        while p[i] != 13:
            if (p[i] < 32 and p[i] != 9) or p[i] == 127:
                return -1
            i += 1
    if p[i] != 13 or p[i + 1] != 10:
        return -1
    h.head_end = end
    if parse_header_lines(p, i + 2, end, h, True) < 0:
        return -1
    h.content_length = -1
    h.chunked = False
    h.close = False
    cdef bint keep_alive_10 = False
    for k in range(h.nheaders):
        s = h.names[k]
        ln = s.end - s.start
        if ln == 14 and name_is(p, s, b"content-length", 14):
            if h.content_length >= 0:
                return -1
            h.content_length = parse_length(p, h.values[k])
            if h.content_length < 0:
                return -1
            h.kinds[k] = H_DROP
        elif ln == 17 and name_is(p, s, b"transfer-encoding", 17):
            if h.chunked or not value_is(p, h.values[k], b"chunked", 7):
                return -1
            j = h.values[k].end
            while p[j] != 13:  # llhttp takes "chunked " as chunked, but not "chunked\t"
                if p[j] != 32:
                    return -1
                j += 1
            h.chunked = True
            h.kinds[k] = H_DROP
        elif (ln == 10 and name_is(p, s, b"connection", 10)) or (
                ln == 16 and name_is(p, s, b"proxy-connection", 16)):
            if has_token(p, h.values[k], b"close", 5):
                h.close = True
            elif h.http10 and has_token(p, h.values[k], b"keep-alive", 10):
                keep_alive_10 = True
            h.kinds[k] = H_DROP
        elif (ln == 10 and name_is(p, s, b"keep-alive", 10)) or (ln == 7 and name_is(p, s, b"upgrade", 7)) or (
            ln == 7 and name_is(p, s, b"trailer", 7)) or (ln == 2 and name_is(p, s, b"te", 2)) or (
            ln == 18 and name_is(p, s, b"proxy-authenticate", 18)) or (
            ln == 19 and name_is(p, s, b"proxy-authorization", 19)) or (
            ln == 21 and name_is(p, s, b"x-envoy-peer-metadata", 21)) or (
            ln == 24 and name_is(p, s, b"x-envoy-peer-metadata-id", 24)):
            h.kinds[k] = H_DROP
    if h.chunked and h.content_length >= 0:
        return -1
    if h.http10 and not keep_alive_10:
        h.close = True
    return 1


cdef inline char* put(char* out, const unsigned char* src, Py_ssize_t n) noexcept:
    memcpy(out, src, n)
    return out + n


cdef inline char* put_lower(char* out, const unsigned char* src, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = <char>LOWER[src[i]]
    return out + n


cdef inline char* put_bytes(char* out, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(out, PyBytes_AS_STRING(b), n)
    return out + n


cdef inline Py_ssize_t headers_size(Head* h) noexcept:
    cdef Py_ssize_t total = 0
    cdef int k
    for k in range(h.nheaders):
        total += (h.names[k].end - h.names[k].start) + (h.values[k].end - h.values[k].start) + 4
    return total


cdef inline char* put_response_headers(char* out, const unsigned char* p, Head* h) noexcept:
    """A response's headers but the dropped ones, as they came (names lowercased, as the
    interpreted lane forwards them)."""
    cdef int k
    for k in range(h.nheaders):
        if h.kinds[k] == H_DROP:
            continue
        out = put_lower(out, p + h.names[k].start, h.names[k].end - h.names[k].start)
        out[0] = 58
        out[1] = 32
        out = put(out + 2, p + h.values[k].start, h.values[k].end - h.values[k].start)
        out[0] = 13
        out[1] = 10
        out += 2
    return out


cdef char* put_request_headers(char* o, const unsigned char* p, Head* h, bytes authority,
                               bint inbound) noexcept:
    """The request's headers in their order, names lowercased (as the interpreted lane forwards
    them), Host carrying the authority the request was routed by, hop-by-hop ones left out."""
    cdef int k
    cdef unsigned char kind
    for k in range(h.nheaders):
        kind = h.kinds[k]
        if kind == H_DROP or (inbound and (kind == H_PEER or kind == H_PEER_ID)):
            continue
        if kind == H_HOST:
            o = put(o, <const unsigned char*>b"host: ", 6)
            o = put_bytes(o, authority)
        else:
            o = put_lower(o, p + h.names[k].start, h.names[k].end - h.names[k].start)
            o[0] = 58
            o[1] = 32
            o = put(o + 2, p + h.values[k].start, h.values[k].end - h.values[k].start)
        o[0] = 13
        o[1] = 10
        o += 2
    return o


# --- Istio metrics ------------------------------------------------------------------------------

cdef double DURATION_BOUNDS[32]
cdef double BYTES_BOUNDS[32]
cdef int N_DURATION = 0
cdef int N_BYTES = 0


cdef void _init_buckets():
    """The histogram boundaries of stats.py, as C arrays."""
    global N_DURATION, N_BYTES
    from meshpilot.proxy.stats import BYTES_BUCKETS, DURATION_BUCKETS

    N_DURATION = min(len(DURATION_BUCKETS), 32)
    N_BYTES = min(len(BYTES_BUCKETS), 32)
    for i in range(N_DURATION):
        DURATION_BOUNDS[i] = DURATION_BUCKETS[i]
    for i in range(N_BYTES):
        BYTES_BOUNDS[i] = BYTES_BUCKETS[i]


cdef inline Py_ssize_t bucket(double* bounds, int n, double v) noexcept:
    """bisect_left: the first boundary >= v (Prometheus' ``le``), n when above them all."""
    cdef int i = 0
    while i < n and bounds[i] < v:
        i += 1
    return i


cdef void observe(object series, double ms, long long req, long long resp):
    """``IstioMetrics.record_in`` for a series that exists: one request into its counters."""
    cdef list counts
    cdef Py_ssize_t i
    series.count += 1
    counts = series.dur
    i = bucket(DURATION_BOUNDS, N_DURATION, ms)
    counts[i] = counts[i] + 1
    series.dur_sum += ms
    counts = series.req
    i = bucket(BYTES_BOUNDS, N_BYTES, <double>req) if req else 0
    counts[i] = counts[i] + 1
    series.req_sum += req
    counts = series.resp
    i = bucket(BYTES_BOUNDS, N_BYTES, <double>resp)
    counts[i] = counts[i] + 1
    series.resp_sum += resp


cdef list header_pairs(const unsigned char* p, Head* h, bint drop_peer):
    """The head's headers as the interpreted lane lists them: (lowercased name, value) bytes, in
    order, optionally without the peer-metadata pair."""
    cdef list out = []
    cdef int k
    for k in range(h.nheaders):
        if drop_peer and (h.kinds[k] == H_PEER or h.kinds[k] == H_PEER_ID):
            continue
        out.append((PyBytes_FromStringAndSize(<char*>p + h.names[k].start, h.names[k].end - h.names[k].start).lower(),
                    PyBytes_FromStringAndSize(<char*>p + h.values[k].start, h.values[k].end - h.values[k].start)))
    return out


# --- plans: what a route decides, once per (listener, authority, path) and configuration ----------


_TEXT_PLAIN = [(b"content-type", b"text/plain")]


class _NeedsView(Exception):
    """The virtual host matches on more than the path: not a plain request."""


def _no_view():
    raise _NeedsView


cdef class Plan:
    """A cached routing decision the lane can act on without looking at the request again."""

    cdef int kind
    cdef str reason
    cdef object route
    cdef str route_name
    cdef tuple targets        # WeightedTarget objects, picked by the route
    cdef tuple clusters       # their ClusterStates, in the same order
    cdef tuple request_ops    # their request header edits (a tuple of HeaderOps, or None), same order
    cdef tuple response_ops   # their response header edits (HeaderOps, or None), same order
    cdef object cluster       # the one ClusterState when there is a single target
    cdef object key           # matched plans: the route (or virtual host) this plan was made for
    cdef tuple hash_names     # consistent hashing: per policy, a header name (bytes) or None for the source IP
    cdef bint rewrites        # the route rewrites the path or the authority
    cdef double timeout
    cdef object table         # P_MATCH: the route table to match each request against

    def __repr__(self):
        if self.kind == P_SLOW:
            return f"<Plan slow: {self.reason}>"
        if self.kind == P_MATCH:
            return f"<Plan match per request in {self.table.name!r}>"
        return f"<Plan forward route={self.route_name!r} clusters={[c.name for c in self.clusters]}>"


cdef Plan slow(str reason):
    cdef Plan p = Plan.__new__(Plan)
    p.kind = P_SLOW
    p.reason = reason
    return p


cdef class FastLane:
    """Per proxy: the plan cache for the current configuration snapshot, and a few constants."""

    cdef readonly object proxy
    cdef object snapshot
    cdef dict plans           # listener name -> {authority \0 path: Plan}
    cdef dict route_plans     # id(route) -> Plan, for routes chosen per request (P_MATCH)
    cdef bytes peer_blob      # the metadata-exchange headers every outbound request carries
    cdef object request_id
    cdef object route_name_for
    cdef object original_dst
    cdef object blackhole
    cdef object status_line
    cdef dict status_lines
    cdef tuple millis
    cdef object downstream_factory
    cdef object request_view
    cdef object request_head
    cdef frozenset hop_or_peer
    cdef object upstream_factory
    # the destination side's last series table, by peer metadata and cluster (one caller, mostly)
    cdef object last_cluster
    cdef object last_peer
    cdef object last_table
    cdef Py_ssize_t max_head           # settings.max_header_bytes: bigger heads get the other lane's 431
    cdef public long long requests     # handled in the lane (tests and /stats read it)
    cdef public long long handovers    # connections given to the interpreted lane

    def __init__(self, proxy):
        from meshpilot.proxy import http
        from meshpilot.proxy.config import BLACKHOLE
        from meshpilot.proxy.router import RequestView

        self.proxy = proxy
        self.snapshot = None
        self.plans = {}
        self.route_plans = {}
        self.peer_blob = b"".join(k + b": " + v + b"\r\n" for k, v in proxy.peer_headers)
        self.request_id = http._request_id
        self.route_name_for = http._route_name_for
        self.original_dst = "ORIGINAL_DST"
        self.blackhole = BLACKHOLE
        self.status_line = http.status_line
        self.status_lines = dict(http._STATUS_LINE)
        self.millis = http._MILLIS
        self.downstream_factory = http.DownstreamProtocol
        self.request_view = RequestView
        self.request_head = http.request_head
        self.hop_or_peer = http._HOP_OR_PEER
        self.upstream_factory = FastUpstream
        self.requests = 0
        self.handovers = 0
        self.max_head = proxy.settings.max_header_bytes
        _init_buckets()

    def __repr__(self):
        return f"<FastLane requests={self.requests} handovers={self.handovers}>"

    cdef Plan plan_for(self, object snap, object lc, bytes authority, bytes path):
        if snap is not self.snapshot:
            self.snapshot = snap
            self.plans = {}
            self.route_plans = {}
        per = self.plans.get(lc.name)
        if per is None:
            per = self.plans[lc.name] = {}
        key = authority + b"\0" + path
        cdef Plan plan = per.get(key)
        if plan is None:
            plan = self.make_plan(snap, lc, authority.decode("latin-1"), path.decode("latin-1"))
            if len(per) >= 4096:
                per.clear()
            per[key] = plan
        return plan

    cdef Plan make_plan(self, snap, lc, str authority, str path):
        if lc.route_config_name is None and lc.direction == "INBOUND":
            return self.forward(snap, None, lc.cluster or "")
        name = lc.route_config_name
        if name is None:
            name = self.route_name_for(authority)
        table = snap.routes.get(name)
        route = None
        vh = None
        cdef Plan plan
        if table is not None:
            try:
                vh, route = table.lookup(authority, path, _no_view)
            except _NeedsView:
                plan = Plan.__new__(Plan)
                plan.kind = P_MATCH
                plan.table = table
                return plan
        return self.route_plan(snap, lc, vh, route)

    cdef Plan matched_plan(self, object lc, vh, route):
        """The plan for a route chosen per request, cached per route for the snapshot."""
        target = route if route is not None else vh
        key = (lc.name, id(target))
        cdef Plan plan = self.route_plans.get(key)
        if plan is None or plan.key is not target:  # (an id is unique only among live objects)
            plan = self.route_plan(self.snapshot, lc, vh, route)
            plan.key = target
            if len(self.route_plans) >= 4096:
                self.route_plans.clear()
            self.route_plans[key] = plan
        return plan

    cdef Plan route_plan(self, snap, lc, vh, route):
        if route is None:
            if lc.cluster is None or vh is not None:
                return slow("no route")
            return self.forward(snap, None, lc.cluster)
        if route.kind != "route":
            return slow(route.kind)
        hash_names = []
        for hp in route.hash_policy:
            if hp.kind == "header":
                hash_names.append(hp.name.lower().encode("latin-1"))
            elif hp.kind == "source_ip":
                hash_names.append(None)
            else:
                return slow("hash policy on a cookie or query parameter")
        cdef Plan plan = Plan.__new__(Plan)
        plan.kind = P_FORWARD
        plan.hash_names = tuple(hash_names) if hash_names else None
        plan.rewrites = (route.prefix_rewrite is not None or route.regex_rewrite is not None
                         or route.host_rewrite is not None)
        plan.route = route
        plan.route_name = route.name
        plan.targets = tuple(route.targets)
        plan.timeout = route.timeout
        clusters = []
        for t in route.targets:
            c = self.usable_cluster(snap, t.cluster)
            if c is None:
                return slow("cluster")
            clusters.append(c)
        plan.clusters = tuple(clusters)
        plan.request_ops = tuple(t.request_chain if any(t.request_chain) else None for t in route.targets)
        plan.response_ops = tuple(t.merged_response_ops or None for t in route.targets)
        plan.cluster = clusters[0] if len(clusters) == 1 else None
        return plan

    cdef Plan forward(self, snap, route, str cluster_name):
        c = self.usable_cluster(snap, cluster_name)
        if c is None:
            return slow("cluster")
        cdef Plan plan = Plan.__new__(Plan)
        plan.kind = P_FORWARD
        plan.route = None
        plan.route_name = ""
        plan.targets = plan.request_ops = plan.response_ops = ()
        plan.hash_names = None
        plan.rewrites = False
        plan.clusters = (c,)
        plan.cluster = c
        plan.timeout = 0.0
        return plan

    cdef object usable_cluster(self, snap, str name):
        c = snap.clusters.get(name)
        if c is None or name == self.blackhole or c.type == self.original_dst:
            return None
        return c


# --- downstream ---------------------------------------------------------------------------------


cdef class FastDownstream:
    """A client connection on an outbound or inbound listener, while its requests are plain."""

    cdef FastLane lane
    cdef object proxy
    cdef readonly object listener
    cdef readonly str listener_name
    cdef readonly object transport
    cdef readonly bint admin
    cdef readonly str local_addr
    cdef readonly str remote_addr
    cdef readonly str remote_ip
    cdef object snapshot       # the configuration ``listener`` was read from
    cdef bint inbound
    cdef bint logging          # the listener has access loggers: exchanges keep what they read
    cdef readonly long long conn_id
    cdef FastExchange current
    cdef bytes pending         # bytes of the next request(s), read while one is in flight
    cdef bint reading_paused
    cdef readonly bint write_paused
    cdef readonly bint closed
    cdef double last_active
    cdef object timer

    def __init__(self, FastLane lane, listener):
        self.lane = lane
        self.proxy = lane.proxy
        self.listener = listener
        self.listener_name = listener.name
        self.inbound = listener.direction == "INBOUND"
        self.logging = bool(listener.loggers)
        self.admin = False
        self.current = None
        self.pending = b""
        self.local_addr = self.remote_addr = self.remote_ip = ""

    def __repr__(self):
        return f"<FastDownstream {self.remote_addr} -> {self.local_addr} {self.listener_name} current={self.current!r}>"

    def connection_made(self, transport):
        from meshpilot.proxy.http import HIGH_WATER, _addr

        self.transport = transport
        self.local_addr, _ = _addr(transport.get_extra_info("sockname"))
        self.remote_addr, self.remote_ip = _addr(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.proxy.downstream.add(self)
        self.conn_id = self.proxy.next_conn_id()
        self.proxy.counters.inc(f"listener.{self.local_addr}.downstream_cx_total")
        self.last_active = now_mono()
        self.arm_idle(self.proxy.settings.idle_timeout)

    def connection_lost(self, exc):
        self.closed = True
        self.proxy.downstream.discard(self)
        self.cancel_idle()
        x = self.current
        if x is not None:
            self.current = None
            x.downstream_lost()

    def eof_received(self):
        return None

    def pause_writing(self):
        self.write_paused = True
        x = self.current
        if x is not None and x.upstream is not None:
            x.upstream.pause_for_downstream()

    def resume_writing(self):
        self.write_paused = False
        x = self.current
        if x is not None and x.upstream is not None:
            x.upstream.resume_for_downstream()

    def data_received(self, bytes data):
        if self.current is not None:
            # A pipelined request: it waits for the response in flight.
            self.pending += data
            if len(self.pending) > PENDING_HIGH and not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
            return
        if self.pending:
            data = self.pending + data
            self.pending = b""
        self.serve(data)

    cdef void serve(self, bytes data):
        """Start the first request in ``data``; the rest waits in ``pending``. Whatever goes wrong
        in the Python the lane calls (route matchers, header edits, pools) must not unwind into
        the callback that got here (an upstream's, for a pipelined request): before the exchange
        starts, the interpreted lane takes the connection (and answers as it does, 400 at worst);
        after, the connection is cut."""
        try:
            self.start(data)
        except Exception:
            log.exception("fast lane: serving a request failed")
            if self.current is None and not self.closed:
                self.handover(data)
            else:
                self.abort()

    cdef void start(self, bytes data) except *:
        cdef Head h
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef int r = parse_request(p, n, &h)
        if r != 1 or h.head_end > self.lane.max_head or (
                h.content_length > 0 and h.head_end + h.content_length > n):
            self.handover(data)
            return
        proxy = self.proxy
        if proxy.draining:
            self.handover(data)
            return
        snap = proxy.snapshot
        if snap is not self.snapshot:
            # a push: the listener's new version, if it is still there (open connections keep the old one)
            self.snapshot = snap
            self.listener = snap.listeners.get(self.listener_name) or self.listener
            self.inbound = self.listener.direction == "INBOUND"
            self.logging = bool(self.listener.loggers)
        lc = self.listener
        # authority and path, from the target (absolute-form) or the Host header
        cdef Py_ssize_t ts = h.target.start, te = h.target.end, i, path_start, q
        cdef bytes authority
        if p[ts] != 47:
            i = ts + 7
            while i < te and p[i] != 47:
                i += 1
            authority = PyBytes_FromStringAndSize(<char*>p + ts + 7, i - ts - 7)
            path_start = i
        else:
            if h.host < 0:
                self.handover(data)
                return
            authority = PyBytes_FromStringAndSize(<char*>p + h.values[h.host].start,
                                                  h.values[h.host].end - h.values[h.host].start)
            path_start = ts
        if not authority:
            self.handover(data)
            return
        q = path_start
        while q < te and p[q] != 63:  # '?'
            q += 1
        cdef bytes path = PyBytes_FromStringAndSize(<char*>p + path_start, q - path_start) if q > path_start else b"/"
        cdef Plan plan = self.lane.plan_for(snap, lc, authority, path)
        cdef bytes rid = None
        cdef list headers = None  # the request's headers as the interpreted lane lists them, when needed
        inbound = self.inbound
        if plan.kind == P_MATCH:
            headers, rid = self.header_list(p, &h, inbound)
            view = self.lane.request_view(
                PyBytes_FromStringAndSize(<char*>p, h.method.end).decode("latin-1"),
                path.decode("latin-1"),
                PyBytes_FromStringAndSize(<char*>p + q + 1, te - q - 1).decode("latin-1") if q < te else "",
                authority.decode("latin-1"),
                headers,
                self.remote_ip,
            )
            vh, route = plan.table.route(view)
            plan = self.lane.matched_plan(lc, vh, route)
        if plan.kind != P_FORWARD:
            self.handover(data)
            return
        # the target: the only one, or the route's weighted pick (found by identity, not hashing)
        cdef Py_ssize_t t = 0, ntargets = len(plan.targets)
        if ntargets > 1:
            picked = plan.route.pick()
            while t < ntargets - 1 and plan.targets[t] is not picked:
                t += 1
        cluster = plan.clusters[t]
        hash_key = None
        if plan.hash_names is not None:
            # as the interpreted lane: the request as it arrived (before edits), first policy
            # that yields a value wins
            if headers is None:
                headers, rid = self.header_list(p, &h, inbound)
            hash_key = self.hash_key(plan.hash_names, headers)
        host = cluster.balancer.choose(hash_key)
        if host is None:
            self.handover(data)  # no healthy upstream: the interpreted lane answers 503 UH
            return
        cdef FastExchange x = FastExchange.__new__(FastExchange)
        x.start_mono = now_mono()
        self.last_active = x.start_mono
        x.conn = self
        x.lane = self.lane
        x.proxy = self.proxy
        x.status = 0
        x.flags = ""
        x.details = ""
        x.method = PyBytes_FromStringAndSize(<char*>p, h.method.end).decode("latin-1")
        x.head_only = x.method == "HEAD"
        x.authority = authority.decode("latin-1")
        x.route = plan.route
        x.route_name = plan.route_name
        x.cluster = cluster
        x.cluster_name = cluster.name
        x.host = host
        x.upstream_host = host.key
        x.close_after = h.close
        x.bytes_received = h.content_length if h.content_length > 0 else 0
        if inbound and h.peer >= 0:
            x.peer_header = PyBytes_FromStringAndSize(<char*>p + h.values[h.peer].start,
                                                     h.values[h.peer].end - h.values[h.peer].start)
        request_ops = plan.request_ops[t] if ntargets else None
        if ntargets:
            x.response_ops = plan.response_ops[t]
        if self.logging:
            # what the access log reads later: the header list (edited below, if the route says so)
            x.logging = True
            x.resp_headers = ()
            x.target_raw = PyBytes_FromStringAndSize(<char*>p + path_start, te - path_start) if te > path_start else b"/"
            if headers is None:
                headers, rid = self.header_list(p, &h, inbound)
        if request_ops is not None or plan.rewrites:
            # Header edits and rewrites: on the header list, in the interpreted lane's order,
            # then the same head (http.request_head).
            if headers is None:
                headers, rid = self.header_list(p, &h, inbound)
            if hash_key is not None:
                headers = list(headers)  # the edits must not show in what hashing saw
            if request_ops is not None:
                for ops in request_ops:
                    headers = ops.apply(headers)
            up_target = PyBytes_FromStringAndSize(<char*>p + path_start, te - path_start) if te > path_start else b"/"
            up_authority = authority
            if plan.rewrites:
                route = plan.route
                rewritten = route.rewrite_path(path.decode("latin-1"))
                if rewritten is not None:
                    headers.append((b"x-envoy-original-path", up_target))
                    # the query stays (it may be empty: a target with no path has none either)
                    up_target = rewritten.encode("latin-1") + PyBytes_FromStringAndSize(<char*>p + q, te - q)
                if route.host_rewrite is not None:
                    x.authority = route.host_rewrite
                    up_authority = route.host_rewrite.encode("latin-1")
                if x.logging:
                    x.target_raw = up_target
            if not inbound:
                headers += self.proxy.peer_headers
            x.request = self.edited_request(p, &h, up_authority, up_target, headers)
        else:
            x.request = self.build_request(p, &h, authority, path_start, inbound, rid)
            if headers is not None and not inbound:
                headers += self.proxy.peer_headers
        x.req_headers = headers
        self.current = x
        rest = h.head_end + (h.content_length if h.content_length > 0 else 0)
        if rest < n:
            self.pending = data[rest:]
        self.lane.requests += 1
        x.begin(plan.timeout)

    cdef tuple header_list(self, const unsigned char* p, Head* h, bint inbound):
        """(headers, generated request id): every header as the interpreted lane keeps them at
        routing time, lowercased names, peer metadata stripped on inbound listeners, and an
        x-request-id appended when the client sent none."""
        cdef list out = header_pairs(p, h, inbound)
        cdef bytes rid = None
        if h.rid < 0:
            rid = self.lane.request_id()
            out.append((b"x-request-id", rid))
        return out, rid

    cdef object hash_key(self, tuple names, list headers):
        """The consistent-hash key: the first policy's header value (or the client's IP) found."""
        for name in names:
            if name is None:
                return self.remote_ip.encode()
            for k, v in headers:
                if k == name:
                    return v
        return None

    cdef bytes edited_request(self, const unsigned char* p, Head* h, bytes authority, bytes target,
                              list headers):
        """The upstream head from an edited header list (``http.request_head``), and the body."""
        head, _ = self.lane.request_head(
            PyBytes_FromStringAndSize(<char*>p, h.method.end), target, authority, headers, False, False,
            h.content_length if h.content_length >= 0 else None,
        )
        if h.content_length > 0:
            return head + PyBytes_FromStringAndSize(<char*>p + h.head_end, h.content_length)
        return head

    cdef bytes build_request(self, const unsigned char* p, Head* h, bytes authority, Py_ssize_t path_start,
                             bint inbound, bytes rid):
        """The upstream request head, and the body that came with it, in one buffer."""
        cdef bytes peer = None if inbound else self.lane.peer_blob
        cdef char lenbuf[48]
        cdef int lenlen = 0
        cdef Py_ssize_t body = h.content_length if h.content_length > 0 else 0
        if h.rid < 0 and rid is None:
            rid = self.lane.request_id()
        if h.content_length >= 0:
            lenlen = snprintf(lenbuf, 48, b"content-length: %lld\r\n", h.content_length)
        # An upper bound of what is written below: the request line (an empty absolute-form path
        # becomes "/"), the headers as they came, a Host line (appended, or in place with the
        # authority, never longer than both), request id, peer metadata, length, CRLF, body.
        cdef Py_ssize_t target_len = h.target.end - path_start if h.target.end > path_start else 1
        cdef Py_ssize_t size = (h.method.end + 1 + target_len + 11 + headers_size(h)
                                + 8 + PyBytes_GET_SIZE(authority) + lenlen + 2 + body)
        if rid is not None:
            size += 16 + PyBytes_GET_SIZE(rid)
        if peer is not None:
            size += PyBytes_GET_SIZE(peer)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef char* o = PyBytes_AS_STRING(out)
        cdef char* start = o
        o = put(o, p, h.method.end)
        o[0] = 32
        o += 1
        if path_start < h.target.end:
            o = put(o, p + path_start, h.target.end - path_start)
        else:
            o[0] = 47
            o += 1
        o = put(o, <const unsigned char*>b" HTTP/1.1\r\n", 11)
        o = put_request_headers(o, p, h, authority, inbound)
        if rid is not None:
            o = put(o, <const unsigned char*>b"x-request-id: ", 14)
            o = put_bytes(o, rid)
            o[0] = 13
            o[1] = 10
            o += 2
        if peer is not None:
            o = put_bytes(o, peer)
        if h.host < 0:  # an absolute-form request without Host: its authority, last
            o = put(o, <const unsigned char*>b"host: ", 6)
            o = put_bytes(o, authority)
            o[0] = 13
            o[1] = 10
            o += 2
        o = put(o, <const unsigned char*>lenbuf, lenlen)
        o[0] = 13
        o[1] = 10
        o += 2
        if body:
            o = put(o, p + h.head_end, body)
        assert o - start <= size
        return out[:o - start] if o - start != size else out

    cdef void handover(self, bytes data):
        """Give the connection, and the bytes read so far, to the interpreted lane for good."""
        self.lane.handovers += 1
        self.cancel_idle()
        self.proxy.downstream.discard(self)
        py = self.lane.downstream_factory(self.proxy, self.listener)
        self.transport.set_protocol(py)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        py.adopt(self.transport, self.write_paused, data, self.conn_id)
        self.transport = None
        self.closed = True

    cdef void exchange_done(self, FastExchange x):
        if x is not self.current:
            return
        self.current = None
        self.last_active = x.end_mono
        if self.closed:
            return
        if x.close_after or self.proxy.draining:
            self.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.pending:
            data = self.pending
            self.pending = b""
            self.serve(data)

    cdef void write(self, bytes data):
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self):
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self):
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def drain_idle(self):
        if self.current is None:
            self.close()

    # One lazily moved deadline: a request only stores the time it ended.

    cdef void arm_idle(self, double delay):
        if delay <= 0 or self.closed:
            return
        loop = self.proxy.loop
        self.timer = loop.call_later(delay, self.on_idle_timer)

    cdef void cancel_idle(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_idle_timer(self):
        self.timer = None
        if self.closed:
            return
        idle = self.proxy.settings.idle_timeout
        left = self.last_active + idle - now_mono()
        if self.current is None and left <= 0.001:
            self.close()
        else:
            self.arm_idle(left if left > 0.001 else idle)


# --- exchange -----------------------------------------------------------------------------------


cdef class FastExchange:
    """One plain request and its response. Shaped like ``http.Exchange`` where the proxy's
    telemetry and the pool look (``record``, ``attach``, ``upstream_failed``)."""

    cdef FastLane lane
    cdef object proxy
    cdef readonly FastDownstream conn
    cdef readonly object cluster
    cdef readonly str cluster_name
    cdef readonly object host
    cdef readonly str upstream_host
    cdef readonly object route
    cdef readonly str route_name
    cdef readonly str method
    cdef readonly str authority
    cdef readonly object peer_header
    cdef readonly int status
    cdef readonly str flags
    cdef readonly str details
    cdef readonly double start_mono
    cdef readonly double end_mono
    cdef readonly double upstream_start
    cdef readonly long long bytes_received
    cdef readonly long long bytes_sent
    cdef readonly bint done
    cdef readonly FastUpstream upstream
    cdef bytes request
    cdef object response_ops     # the route's response header edits (HeaderOps), or None
    # kept for the access log only (the listener has loggers): what http.Exchange would hold
    cdef bint logging
    cdef bytes target_raw
    cdef readonly object req_headers
    cdef readonly object resp_headers
    cdef readonly double response_start_mono
    cdef readonly str upstream_local
    cdef readonly str upstream_failure
    cdef readonly str termination
    cdef bint head_only
    cdef bint close_after
    cdef bint response_started
    cdef object timer

    def __repr__(self):
        return f"<FastExchange {self.method} {self.authority} status={self.status} flags={self.flags or '-'}>"

    @property
    def listener(self):
        return self.conn.listener

    # What the access log reads beyond the fields above (accesslog.py).

    @property
    def start_time(self):
        return self.start_mono + self.proxy.wall_offset

    @property
    def request_end_mono(self):
        return self.start_mono  # the whole request came in the read that started the exchange

    @property
    def target(self):
        return self.target_raw.decode("latin-1") if self.target_raw is not None else ""

    @property
    def protocol(self):
        return "HTTP/1.1"

    cdef void begin(self, double timeout):
        host = self.host
        host.active += 1
        self.cluster.stats.upstream_rq_total += 1
        pool = host.fast_pool
        if pool is None or pool.retired:
            pool = self.proxy.pool_for(host, self.cluster, fast=True)
        if timeout > 0:
            self.timer = self.proxy.loop.call_later(timeout, self.on_timeout)
        # Pool.acquire's common case inline: the most recently used idle connection.
        cdef list idle = pool.idle
        cdef FastUpstream up
        while idle:
            up = idle.pop()
            if not up.closed:
                pool.active.add(up)
                self.send(up)
                return
        up = pool.acquire(self)  # none idle: it connects, then calls attach()
        if up is not None:
            self.send(up)

    def attach(self, FastUpstream up):
        """The pool connected for us."""
        if self.done:
            up.pool.release(up, True)
            return
        self.send(up)

    cdef void send(self, FastUpstream up):
        self.upstream_local = up.local_addr
        self.upstream = up
        up.exchange = self
        self.upstream_start = now_mono()
        if self.conn.write_paused:
            up.pause_for_downstream()
        up.transport.write(self.request)
        self.request = None

    def upstream_failed(self, str flag, str details, str reason=""):
        if self.done:
            return
        self.upstream_failure = reason
        if not self.response_started:
            self.local_reply(503, flag, details,
                             b"upstream connect error or disconnect/reset before headers. reset reason: "
                             + details.encode())
        else:
            self.flags = flag
            self.details = details
            self.close_after = True
            self.conn.abort()  # a cut response: the client must not take it for a whole one
            self.finish(False)

    def on_timeout(self):
        self.timer = None
        if self.done:
            return
        if not self.response_started:
            self.local_reply(504, "UT", "upstream_response_timeout", b"upstream request timeout")
        else:
            self.flags = "UT"
            self.details = "upstream_response_timeout"
            self.close_after = True
            self.conn.abort()
            self.finish(False)

    cdef void local_reply(self, int status, str flags, str details, bytes body):
        from meshpilot.proxy.http import local_response

        self.status = status
        self.flags = flags
        self.details = details
        # The route's edits, never framing or hop-by-hop headers (as the interpreted lane).
        headers = _TEXT_PLAIN if self.response_ops is None else [
            h for h in self.response_ops.apply(list(_TEXT_PLAIN)) if h[0] not in self.lane.hop_or_peer]
        self.response_started = True
        # The request was read whole, so the connection stays open, as in the interpreted lane.
        closing = self.close_after or self.proxy.draining
        self.resp_headers = headers
        self.response_start_mono = now_mono()
        self.conn.write(local_response(self.proxy, status, body, headers, closing, self.head_only))
        if not self.head_only:
            self.bytes_sent = len(body)
        self.finish(False)

    cdef void downstream_lost(self):
        if self.done:
            return
        self.flags = self.flags or "DC"
        self.details = self.details or "downstream_remote_disconnect"
        self.termination = "downstream_remote_disconnect"
        if not self.response_started:
            self.status = 0
        self.finish(False)

    cdef void finish(self, bint reusable):
        if self.done:
            return
        self.done = True
        self.end_mono = now_mono()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.host.active -= 1
        cdef FastUpstream up = self.upstream
        if up is not None:
            self.upstream = None
            up.exchange = None
            up.resume_for_downstream()
            pool = up.pool
            if reusable and not self.close_after and not up.closed and not self.proxy.draining:
                # Pool.release's keep-alive case inline
                pool.active.discard(up)
                up.idle_since = self.proxy.coarse_now
                pool.idle.append(up)
            else:
                pool.release(up, False)
        try:
            self.record()
        except Exception:
            # Telemetry must never strand the connection: the next request still gets served.
            log.exception("recording %r failed", self)
        self.conn.exchange_done(self)

    cdef void record(self):
        """Istio metrics: straight into the series when it exists (the common case), else
        through the proxy's ``record``, which makes it and counts response flags."""
        cdef FastLane lane = self.lane
        cdef bint inbound = self.conn.inbound
        table = None
        if not self.flags:
            if inbound:
                if self.cluster is lane.last_cluster and self.peer_header == lane.last_peer:
                    table = lane.last_table
            else:
                cached = self.host.stats_key
                if cached is not None and cached[0] == self.cluster_name:
                    table = cached[2]
        if table is not None:
            series = table.get(self.status)
            if series is not None:
                observe(series, (self.end_mono - self.start_mono) * 1000.0, self.bytes_received, self.bytes_sent)
                if self.logging:
                    for logger in self.conn.listener.loggers:
                        logger.log(self)
                return
        self.proxy.record(self)
        if inbound and not self.flags:
            lane.last_cluster = self.cluster
            lane.last_peer = self.peer_header
            lane.last_table = self.proxy.series_for(self, self.conn.listener)[1]


# --- upstream -----------------------------------------------------------------------------------


cdef class FastUpstream:
    """A pooled connection to one endpoint, serving the lane's exchanges one at a time."""

    cdef readonly object pool
    cdef readonly object transport
    cdef public FastExchange exchange
    cdef readonly bint closed
    cdef public double idle_since
    cdef readonly str local_addr
    cdef bytes head_buf          # a response head split across reads
    cdef bint in_body
    cdef int framing
    cdef long long remaining
    cdef int cstate
    cdef long long chunk_left
    cdef Py_ssize_t trailers_at  # where this read's trailer section began (-1: none in it)
    cdef bint reusable
    cdef bint paused

    def __init__(self, pool):
        self.pool = pool
        self.local_addr = ""
        self.head_buf = b""

    def __repr__(self):
        return f"<FastUpstream {self.local_addr} -> {self.pool.address}:{self.pool.port} exchange={self.exchange!r}>"

    def connection_made(self, transport):
        from meshpilot.proxy.http import HIGH_WATER, _addr

        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.local_addr, _ = _addr(transport.get_extra_info("sockname"))

    def connection_lost(self, exc):
        self.closed = True
        self.pool.lost(self)
        x = self.exchange
        if x is None:
            return
        self.exchange = None
        x.upstream = None
        if exc is None and self.in_body and self.framing == B_CLOSE:
            # a close-delimited body is complete at a clean end of stream
            x.conn.write(b"0\r\n\r\n")
            x.finish(False)
        elif x.response_started:
            x.upstream_failed("UC", "upstream_reset_after_response_started{connection_termination}",
                              "connection_termination")
        else:
            x.upstream_failed("UC", "upstream_reset_before_response_started{connection_termination}",
                              "connection_termination")

    def eof_received(self):
        # The server is done with this connection: never hand it out again (the transport closes
        # itself when this returns, connection_lost follows a loop turn later).
        self.closed = True
        return None

    def pause_writing(self):
        pass  # a request and its body are one write, already buffered whole

    def resume_writing(self):
        pass

    cdef void pause_for_downstream(self):
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    cdef void resume_for_downstream(self):
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self):
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def data_received(self, bytes data):
        cdef FastExchange x = self.exchange
        if x is None:
            self.close()  # bytes on an idle connection: the server broke keep-alive
            return
        if not self.in_body:
            if self.head_buf:
                data = self.head_buf + data
                self.head_buf = b""
            self.on_head(x, data)
        else:
            self.on_body(x, data, 0)

    cdef void on_head(self, FastExchange x, bytes data):
        cdef Head h
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef int r
        while True:
            r = parse_response(p, n, &h)
            if r == 0:
                if n > MAX_RESPONSE_HEAD:
                    r = -1
                else:
                    self.head_buf = data
                    return
            if r < 0 or h.status == 101:
                self.exchange = None
                x.upstream = None
                self.close()
                x.upstream_failed("UPE", "upstream_reset_before_response_started{protocol_error}", "protocol_error")
                return
            if h.status >= 200:
                break
            # an interim 1xx response is not forwarded; the final one follows
            data = data[h.head_end:]
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            if n == 0:
                return
        self.reusable = not h.close
        head = self.response_head(x, p, &h)
        self.in_body = True
        self.on_body(x, data, h.head_end, head)

    cdef bytes response_head(self, FastExchange x, const unsigned char* p, Head* h):
        cdef double now = now_mono()
        cdef long ms = <long>((now - x.upstream_start) * 1000)
        x.status = h.status
        x.details = "via_upstream"
        x.response_started = True
        x.response_start_mono = now
        conn = x.conn
        ust = x.lane.millis[ms] if ms < 1000 else b"%d" % ms
        line = x.lane.status_lines.get(h.status)
        if line is None:
            line = x.lane.status_line(h.status)
        cdef bytes framing
        cdef char lenbuf[48]
        cdef int lenlen = 0
        cdef int st = h.status
        if x.head_only or st == 204 or st == 304:
            self.framing = B_NONE
            if h.content_length >= 0:
                lenlen = snprintf(lenbuf, 48, b"content-length: %lld\r\n", h.content_length)
        elif h.chunked:
            self.framing = B_CHUNKED
            self.cstate = C_SIZE
            self.chunk_left = 0
            lenlen = snprintf(lenbuf, 48, b"transfer-encoding: chunked\r\n")
        elif h.content_length >= 0:
            self.framing = B_LENGTH if h.content_length > 0 else B_NONE
            self.remaining = h.content_length
            lenlen = snprintf(lenbuf, 48, b"content-length: %lld\r\n", h.content_length)
        else:
            self.framing = B_CLOSE
            self.reusable = False
            lenlen = snprintf(lenbuf, 48, b"transfer-encoding: chunked\r\n")
        closing = x.close_after or self.proxy_draining()
        cdef list edited = None
        cdef list logged = None
        cdef Py_ssize_t kept_size = headers_size(h)
        if x.response_ops is not None or x.logging:
            # As the interpreted lane: the route's edits apply to everything received, the log
            # shows the result, the client gets it without hop-by-hop and peer-metadata headers.
            logged = header_pairs(p, h, False)
            if x.response_ops is not None:
                logged = x.response_ops.apply(logged)
                drop = x.lane.hop_or_peer
                edited = [(n, v) for n, v in logged if n not in drop]
                kept_size = 0
                for name, value in edited:
                    kept_size += len(name) + len(value) + 4
        # "x-envoy-upstream-service-time: " is 31 bytes, 33 with its CRLF
        cdef Py_ssize_t size = (PyBytes_GET_SIZE(line) + kept_size + 33 + PyBytes_GET_SIZE(ust)
                                + lenlen + (19 if closing else 0) + 2)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef char* o = PyBytes_AS_STRING(out)
        cdef char* start = o
        if x.logging:
            logged.append((b"x-envoy-upstream-service-time", ust))
            x.resp_headers = logged
        o = put_bytes(o, line)
        if edited is None:
            o = put_response_headers(o, p, h)
        else:
            for name, value in edited:
                o = put_bytes(o, name)
                o[0] = 58
                o[1] = 32
                o = put_bytes(o + 2, value)
                o[0] = 13
                o[1] = 10
                o += 2
        o = put(o, <const unsigned char*>b"x-envoy-upstream-service-time: ", 31)
        o = put_bytes(o, ust)
        o[0] = 13
        o[1] = 10
        o += 2
        o = put(o, <const unsigned char*>lenbuf, lenlen)
        if closing:
            o = put(o, <const unsigned char*>b"connection: close\r\n", 19)
        o[0] = 13
        o[1] = 10
        o += 2
        assert o - start <= size
        return out[:o - start]

    cdef bint proxy_draining(self):
        return self.pool.proxy.draining

    cdef void on_body(self, FastExchange x, bytes data, Py_ssize_t offset, bytes head=None):
        """Forward body bytes as the framing says; ``head`` (if any) leaves in the same write."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), take, used
        cdef bint complete = False
        cdef bytes out
        if self.framing == B_NONE:
            used = offset
            complete = True
            out = head
        elif self.framing == B_LENGTH:
            take = n - offset
            if take > self.remaining:
                take = self.remaining
            self.remaining -= take
            x.bytes_sent += take
            used = offset + take
            complete = self.remaining == 0
            if head is None:
                out = data if offset == 0 and take == n else data[offset:used]
            else:
                out = head + data[offset:used]
        elif self.framing == B_CHUNKED:
            used = self.scan_chunks(x, <const unsigned char*>PyBytes_AS_STRING(data), offset, n)
            if used < 0:
                self.fail_mid_body(x)
                return
            complete = self.cstate == C_DONE
            # Trailer fields are dropped, as Envoy's HTTP/1 codec does by default: the body's
            # framing goes up to the last chunk, then the final CRLF is ours.
            end = self.trailers_at if self.trailers_at >= 0 else used
            if head is None:
                out = data if offset == 0 and end == n else data[offset:end]
            else:
                out = head + data[offset:end]
            if complete:
                out += b"\r\n"
        else:  # B_CLOSE: re-framed as chunks for the keep-alive client
            take = n - offset
            x.bytes_sent += take
            used = n
            out = head if head is not None else b""
            if take:
                out += b"%x\r\n" % take + data[offset:] + b"\r\n"
        if out:
            x.conn.write(out)
        if complete:
            self.in_body = False
            if used < n:
                self.reusable = False  # bytes beyond the response: never reuse this connection
            x.finish(self.reusable)

    cdef Py_ssize_t scan_chunks(self, FastExchange x, const unsigned char* p, Py_ssize_t i, Py_ssize_t n):
        """Walk chunked framing (forwarded as it is, but for trailers); the offset where the body
        ended, or n, or -1."""
        cdef unsigned char c
        cdef long long take
        self.trailers_at = i if C_TRAILER <= self.cstate <= C_FINAL_LF or self.cstate == C_TRAILER_VALUE else -1
        while i < n:
            c = p[i]
            st = self.cstate
            if st == C_SIZE or st == C_SIZE_DIGITS:
                if HEXVAL[c] != 255:
                    if self.chunk_left > (1LL << 40):
                        return -1
                    self.chunk_left = self.chunk_left * 16 + HEXVAL[c]
                    self.cstate = C_SIZE_DIGITS
                elif st == C_SIZE_DIGITS and c == 59:  # ';' extensions
                    self.cstate = C_EXT
                elif st == C_SIZE_DIGITS and c == 13:
                    self.cstate = C_SIZE_LF
                else:
                    return -1
                i += 1
            elif st == C_EXT or st == C_EXT_VALUE:
                # after ';' a name, after '=' a token or a quoted string (RFC 9112 7.1.1; no
                # whitespace around them, as llhttp; an empty name is refused, llhttp takes it)
                if st == C_EXT_VALUE and c == 34:
                    self.cstate = C_EXT_QUOTED
                elif not TCHAR[c]:
                    return -1
                else:
                    self.cstate = C_EXT_NAME if st == C_EXT else C_EXT_VALUE_TOKEN
                i += 1
            elif st == C_EXT_QUOTED:
                if c == 34:
                    self.cstate = C_EXT_AFTER_QUOTE
                elif c == 92:  # backslash: a quoted pair
                    self.cstate = C_EXT_QUOTED_ESCAPE
                elif (c < 32 and c != 9) or c == 127:
                    return -1
                i += 1
            elif st == C_EXT_QUOTED_ESCAPE:
                if (c < 32 and c != 9) or c == 127:
                    return -1
                self.cstate = C_EXT_QUOTED
                i += 1
            elif st == C_EXT_AFTER_QUOTE:
                if c == 13:
                    self.cstate = C_SIZE_LF
                elif c == 59:
                    self.cstate = C_EXT
                else:
                    return -1
                i += 1
            elif st == C_EXT_NAME or st == C_EXT_VALUE_TOKEN:
                if c == 13:
                    self.cstate = C_SIZE_LF
                elif c == 59:
                    self.cstate = C_EXT
                elif c == 61 and st == C_EXT_NAME:
                    self.cstate = C_EXT_VALUE
                elif not TCHAR[c]:
                    return -1
                i += 1
            elif st == C_SIZE_LF:
                if c != 10:
                    return -1
                i += 1
                if self.chunk_left > 0:
                    self.cstate = C_DATA
                else:
                    self.cstate = C_TRAILER
                    self.trailers_at = i
            elif st == C_DATA:
                take = n - i
                if take > self.chunk_left:
                    take = self.chunk_left
                self.chunk_left -= take
                x.bytes_sent += take
                i += take
                if self.chunk_left == 0:
                    self.cstate = C_DATA_CR
            elif st == C_DATA_CR:
                if c != 13:
                    return -1
                self.cstate = C_DATA_LF
                i += 1
            elif st == C_DATA_LF:
                if c != 10:
                    return -1
                self.cstate = C_SIZE
                i += 1
            elif st == C_TRAILER:
                if c == 13:
                    self.cstate = C_FINAL_LF
                elif TCHAR[c]:
                    self.cstate = C_TRAILER_NAME
                else:
                    return -1
                i += 1
            elif st == C_TRAILER_NAME:
                if c == 58:  # ':'
                    self.cstate = C_TRAILER_VALUE
                elif not TCHAR[c]:
                    return -1
                i += 1
            elif st == C_TRAILER_VALUE:
                if c == 13:
                    self.cstate = C_TRAILER_LF
                elif (c < 32 and c != 9) or c == 127:
                    return -1
                i += 1
            elif st == C_TRAILER_LF:
                if c != 10:
                    return -1
                self.cstate = C_TRAILER
                i += 1
            elif st == C_FINAL_LF:
                if c != 10:
                    return -1
                self.cstate = C_DONE
                return i + 1
            else:
                return i
        return i

    cdef void fail_mid_body(self, FastExchange x):
        self.exchange = None
        x.upstream = None
        self.close()
        x.upstream_failed("UPE", "upstream_reset_after_response_started{protocol_error}", "protocol_error")


# --- for tests: the C parsers, seen from Python ------------------------------------------------


def parse_request_head(bytes data):
    """``parse_request`` for tests: None when ``data`` holds no complete head, False when the
    head is not plain (the interpreted lane would get it), else a dict of what the lane read."""
    cdef Head h
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef int r = parse_request(p, PyBytes_GET_SIZE(data), &h)
    if r == 0:
        return None
    if r < 0:
        return False
    return {
        "method": data[h.method.start:h.method.end],
        "target": data[h.target.start:h.target.end],
        "headers": header_pairs(p, &h, False),
        "content_length": h.content_length,
        "close": h.close,
        "head_end": h.head_end,
    }


def parse_response_head(bytes data):
    """``parse_response`` for tests: None (incomplete), False (malformed) or what was read."""
    cdef Head h
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef int r = parse_response(p, PyBytes_GET_SIZE(data), &h)
    if r == 0:
        return None
    if r < 0:
        return False
    return {
        "status": h.status,
        "headers": header_pairs(p, &h, False),
        "content_length": h.content_length,
        "chunked": h.chunked,
        "close": h.close,
        "head_end": h.head_end,
    }


def scan_chunked(pieces):
    """Feed chunked-body ``pieces`` to the lane's framing scanner, as successive reads would:
    (body bytes counted, offset in the last piece where the body ended or None) or False when
    the framing is invalid."""
    cdef FastUpstream up = FastUpstream.__new__(FastUpstream)
    cdef FastExchange x = FastExchange.__new__(FastExchange)
    cdef Py_ssize_t used = 0
    cdef bytes piece
    up.cstate = C_SIZE
    up.chunk_left = 0
    for piece in pieces:
        used = up.scan_chunks(x, <const unsigned char*>PyBytes_AS_STRING(piece), 0, PyBytes_GET_SIZE(piece))
        if used < 0:
            return False
        if up.cstate == C_DONE:
            return x.bytes_sent, used
    return x.bytes_sent, None
