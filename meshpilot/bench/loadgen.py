"""The load generator: worker processes driving keep-alive HTTP/1.1 connections, built like a proxy.

Why it is shaped this way:

- **Open loop.** At a fixed rate each request has an intended send time taken from the schedule,
  whether or not an earlier response has arrived. If every connection is busy the request waits in
  a backlog and its latency is still measured from its intended time (coordinated omission corrected,
  as wrk2 does); the uncorrected latency (from the actual send) is kept beside it, and sends that left
  more than ``LATE_SEND`` after their intended time are counted, so a reader can see when the
  generator, not the server, was the bottleneck.
- **Hot path without a high-level client.** One ``asyncio.Protocol`` per connection, an httptools
  response parser reused across keep-alive responses, the request pre-encoded once as bytes, no
  coroutine or timer per request (timeouts are found by a sweep).
- **Several processes.** One asyncio loop saturates one core; ``workers`` processes each own a share
  of the connections and of the rate, and ship HDR histograms back that merge exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from meshpilot.bench.histogram import CompactHistogram, Histogram, ValueCounter, merge_all
from meshpilot.bench.schedule import RateSchedule, Stage
from meshpilot.tasks import spawn

LATE_SEND = 0.001  # a send this much after its intended time counts as late
# Loop timers are millisecond-grained, so a send may go out up to this much *before* its intended
# time rather than up to a millisecond after it; its latency is then measured from the actual send,
# so early sends never flatter the result (see on_response).
SEND_AHEAD = 0.001
SOCKET_ERROR = -1  # Fortio's code for connection-level failures
USER_AGENT = "meshpilot-bench"


class LoadError(Exception):
    """The run could not start (bad target, warmup failure); the message is one line."""


@dataclass
class LoadOptions:
    url: str
    qps: float = 8.0  # <= 0: as fast as possible (closed loop)
    duration: float = 5.0  # seconds; 0 = until interrupted (ignored with exactly or stages)
    exactly: int = 0
    connections: int = 4
    workers: int = 1
    percentiles: tuple[float, ...] = (50.0, 75.0, 90.0, 99.0, 99.9)
    headers: tuple[tuple[str, str], ...] = ()
    method: str = ""
    payload: bytes = b""
    content_type: str = ""
    timeout: float = 3.0
    keepalive: bool = True
    abort_on: int = 0
    jitter: bool = False
    uniform: bool = False
    nocatchup: bool = False
    stages: tuple[Stage, ...] = ()
    labels: str = ""
    warmup: bool = True
    allow_initial_errors: bool = False
    proxy: str = ""  # "host:port" of an HTTP proxy (a sidecar's outbound listener): absolute-form requests

    # derived
    host: str = field(init=False, default="")
    port: int = field(init=False, default=0)
    request: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        if "://" not in self.url:
            self.url = "http://" + self.url  # as Fortio (and curl) do
        parts = urlsplit(self.url)
        if parts.scheme != "http":
            raise LoadError(
                f"unsupported URL scheme {parts.scheme!r} in {self.url} (only http:// is supported)"
            )
        if not parts.hostname:
            raise LoadError(f"no host in URL {self.url}")
        self.host = parts.hostname
        try:
            self.port = parts.port or 80
        except ValueError:
            raise LoadError(f"invalid port in URL {self.url}") from None
        if self.connections < 1:
            raise LoadError("-c must be at least 1")
        if self.exactly < 0:
            raise LoadError("-n must be >= 0")
        if self.timeout <= 0:
            raise LoadError("-timeout must be > 0")
        if self.method == "HEAD":
            # a HEAD response announces a body it does not send; the response parser cannot be told
            raise LoadError("-X HEAD is not supported (use GET)")
        self.workers = max(1, min(self.workers, self.connections))
        target = ""
        if self.proxy:
            # through a proxy the request line carries the whole URL, as an app behind HTTP_PROXY sends it
            target = f"http://{parts.netloc}{parts.path or '/'}"
            proxy_host, sep, proxy_port = self.proxy.rpartition(":")
            if not sep or not proxy_port.isdigit():
                raise LoadError(f"invalid proxy address {self.proxy!r} (expected host:port)")
            self.host, self.port = proxy_host, int(proxy_port)
        self.request = build_request(self, target or parts.path or "/", parts.query, parts.netloc)

    @property
    def fixed_rate(self) -> bool:
        return bool(self.stages) or self.qps > 0

    def schedule(self) -> RateSchedule:
        if self.stages:
            return RateSchedule.from_stages(list(self.stages))
        return RateSchedule.constant(self.qps)

    @property
    def planned_duration(self) -> float:
        """Seconds the run is planned to last (0 when it is bounded by a count or an interrupt)."""
        if self.stages:
            return sum(s.duration for s in self.stages)
        if self.exactly:
            return self.exactly / self.qps if self.qps > 0 else 0.0
        return self.duration


def build_request(opts: LoadOptions, path: str, query: str, netloc: str) -> bytes:
    """The request, encoded once. Fortio's rules: a payload or a content type implies POST, unless
    ``-X`` says otherwise; ``-H Host:`` overrides the Host header."""
    method = opts.method or ("POST" if opts.payload or opts.content_type else "GET")
    target = path + ("?" + query if query else "")
    host = netloc.rsplit("@", 1)[-1]
    headers: list[tuple[str, str]] = []
    user_agent = USER_AGENT
    content_type = opts.content_type
    for name, value in opts.headers:
        lname = name.lower()
        if lname == "host":
            host = value
        elif lname == "user-agent":
            user_agent = value
        elif lname == "content-type":
            content_type = value
        else:
            headers.append((name, value))
    if opts.payload and not content_type:
        content_type = "application/octet-stream"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if opts.payload or content_type:
        lines.append(f"Content-Length: {len(opts.payload)}")
    if not opts.keepalive:
        lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in headers)
    for line in lines:
        if "\r" in line or "\n" in line:
            raise LoadError(f"invalid header line {line!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + opts.payload


# --------------------------------------------------------------------------------------------
# worker side


class _Client(asyncio.Protocol):
    """One connection. Sends one request at a time (no pipelining, like Fortio and wrk)."""

    def __init__(self, worker: _Worker, slot: int) -> None:
        self.worker = worker
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.intended = 0.0
        self.sent = 0.0
        self.rx = 0
        self.body = 0
        self.connected_at = 0.0
        self.connect_started = 0.0
        self.closing = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self.rx += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail()
        except httptools.HttpParserError:
            self._fail()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.busy = False
            self.worker.on_error(self)
        self.worker.on_lost(self)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        done = time.perf_counter()
        self.busy = False
        keep = self.parser.should_keep_alive() and self.worker.opts.keepalive
        self.worker.on_response(self, self.parser.get_status_code(), done, keep)

    # driving
    def send(self, intended: float) -> None:
        self.busy = True
        self.intended = intended
        self.rx = 0
        self.body = 0
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.worker.request)

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class _Worker:
    """Everything one process does: its connections, its slice of the schedule, its statistics."""

    def __init__(self, index: int, nworkers: int, opts: LoadOptions, nconns: int, pipe: Connection) -> None:
        self.index = index
        self.nworkers = nworkers
        self.opts = opts
        self.nconns = nconns
        self.pipe = pipe
        self.request = opts.request
        self.loop = asyncio.get_running_loop()
        self.corrected = Histogram()
        self.uncorrected = Histogram()
        self.errors = Histogram()
        self.connect_times = Histogram()
        self.sizes = ValueCounter()
        self.header_sizes = ValueCounter()
        self.codes: dict[int, int] = {}
        self.ip_count: dict[str, int] = {}
        self.sockets = [0] * nconns
        self.late = 0
        self.skipped = 0
        self.completed = 0
        self.error_count = 0
        self.clients: list[_Client | None] = [None] * nconns
        self.idle: list[_Client] = []
        self.backlog: deque[float] = deque()
        self.recording = False
        self.generating = False
        self.stopping = False
        self.finished = asyncio.Event()
        self.schedule = opts.schedule()
        self.fixed_rate = opts.fixed_rate
        self.next_g = index
        self.t0 = 0.0
        self.end_at = math.inf
        self.remaining = 0  # closed loop with -n: sends left for this worker
        self.warmup_left = 0
        self.warmup_failure: str | None = None
        self.warmup_done = asyncio.Event()
        self.rng = random.Random(os.getpid() ^ index)
        self.connect_failure = ""
        self.stop_deadline = math.inf

    # connections ----------------------------------------------------------------------------

    async def open(self, slot: int) -> _Client | None:
        client = _Client(self, slot)
        client.connect_started = time.perf_counter()
        try:
            await self.loop.create_connection(lambda: client, self.opts.host, self.opts.port)
        except OSError as exc:
            self.connect_failure = f"{type(exc).__name__}: {exc}"
            return None
        now = time.perf_counter()
        client.connected_at = now
        self.connect_times.record(now - client.connect_started)
        self.sockets[slot] += 1
        assert client.transport is not None
        peer = client.transport.get_extra_info("peername")
        if peer:
            key = f"{peer[0]}:{peer[1]}"
            self.ip_count[key] = self.ip_count.get(key, 0) + 1
        self.clients[slot] = client
        return client

    def on_lost(self, client: _Client) -> None:
        if self.clients[client.slot] is client:
            self.clients[client.slot] = None
        if client in self.idle:
            self.idle.remove(client)
        if not self.stopping:
            # reconnect shortly (not at once: a refusing server would make this spin)
            delay = 0.0 if client.closing else 0.01
            self.loop.call_later(delay, self._reconnect, client.slot)
        else:
            self._maybe_finish()

    def _reconnect(self, slot: int) -> None:
        if self.stopping or self.clients[slot] is not None:
            return
        spawn(self._reconnect_async(slot), name=f"bench-reconnect-{self.index}-{slot}")

    async def _reconnect_async(self, slot: int) -> None:
        client = await self.open(slot)
        if client is None:
            if self.recording and not self.stopping:
                # a refused connection is a failed request when one is waiting for it
                if self.backlog:
                    intended = self.backlog.popleft()
                    now = time.perf_counter()
                    self._record_error(now - intended)
                self.loop.call_later(0.01, self._reconnect, slot)
            return
        if self.stopping:
            client.close()
            return
        self._became_idle(client)

    # statistics -----------------------------------------------------------------------------

    def _record_error(self, latency: float) -> None:
        self.codes[SOCKET_ERROR] = self.codes.get(SOCKET_ERROR, 0) + 1
        self.corrected.record(latency)
        self.uncorrected.record(latency)
        self.errors.record(latency)
        self.completed += 1
        self.error_count += 1
        self._check_abort(SOCKET_ERROR)

    def _check_abort(self, code: int) -> None:
        if self.opts.abort_on and code == self.opts.abort_on and not self.stopping:
            self.pipe.send(("abort", code))
            self.stop()

    def on_response(self, client: _Client, status: int, done: float, keep: bool) -> None:
        if self.warmup_left > 0 and not self.recording:
            self.warmup_left -= 1
            if not 200 <= status < 300 and self.warmup_failure is None and not self.opts.allow_initial_errors:
                self.warmup_failure = f"error {status} for {self.opts.url}"
            if self.warmup_left == 0:
                self.warmup_done.set()
        elif self.recording:
            start = client.intended if client.intended < client.sent else client.sent
            latency = done - start
            self.corrected.record(latency)
            if self.fixed_rate:  # closed loop: both are the same, copied once at the end
                self.uncorrected.record(done - client.sent)
            self.codes[status] = self.codes.get(status, 0) + 1
            self.sizes.record(client.rx)
            self.header_sizes.record(client.rx - client.body)
            self.completed += 1
            if not 200 <= status < 300:
                self.errors.record(latency)
                self.error_count += 1
            self._check_abort(status)
        if not keep:
            client.close()
            return
        self._became_idle(client)

    def on_error(self, client: _Client) -> None:
        if self.warmup_left > 0 and not self.recording:
            self.warmup_left -= 1
            if self.warmup_failure is None and not self.opts.allow_initial_errors:
                self.warmup_failure = f"error {SOCKET_ERROR} for {self.opts.url}: connection closed"
            if self.warmup_left == 0:
                self.warmup_done.set()
            return
        if self.recording:
            self._record_error(time.perf_counter() - min(client.intended, client.sent))

    # dispatch -------------------------------------------------------------------------------

    def _became_idle(self, client: _Client) -> None:
        if self.stopping:
            if not self.opts.keepalive:
                client.close()
            self._maybe_finish()
            return
        if not self.recording:
            self.idle.append(client)
            return
        if not self.fixed_rate:
            if self.generating:
                now = time.perf_counter()
                if self.remaining == 0 or now >= self.end_at:
                    self._stop_generating()
                else:
                    if self.remaining > 0:
                        self.remaining -= 1
                    client.send(now)
                    return
            self.idle.append(client)
            self._maybe_finish()
            return
        if self.backlog:
            self._send(client, self.backlog.popleft())
            return
        self.idle.append(client)
        self._maybe_finish()

    def _send(self, client: _Client, intended: float) -> None:
        client.send(intended)
        if client.sent - intended > LATE_SEND:
            self.late += 1

    def _dispatch(self, intended: float) -> None:
        if self.idle:
            self._send(self.idle.pop(), intended)
        elif self.opts.nocatchup:
            self.skipped += 1  # Fortio's -nocatchup: drop what cannot go out on time
        else:
            self.backlog.append(intended)

    def _tick(self) -> None:
        if not self.generating:
            return
        now = time.perf_counter()
        horizon = now + SEND_AHEAD
        opts = self.opts
        while True:
            g = self.next_g
            if opts.exactly and g >= opts.exactly:
                self._stop_generating()
                return
            offset = self.schedule.due(g)
            if opts.jitter and offset != math.inf:
                rate = self.schedule.rate_at(offset)
                if rate > 0:
                    offset += self.rng.uniform(-0.1, 0.1) / rate * self.nworkers
            due = self.t0 + offset
            if due >= self.end_at or offset == math.inf:
                self._stop_generating()
                return
            if due > horizon:
                break
            self.next_g = g + self.nworkers
            if opts.nocatchup and now - due > 0.01:
                self.skipped += 1
                continue
            self._dispatch(due)
        # No busy polling for the next send: a CPU-bound generator gets preempted for whole time
        # slices on a busy machine, which makes sends later, not earlier.
        self.loop.call_later(max(due - SEND_AHEAD - time.perf_counter(), 0.0), self._tick)

    def _sweep(self) -> None:
        """Once every 50 ms: time out stuck requests, report progress."""
        if self.finished.is_set():
            return
        now = time.perf_counter()
        timeout = self.opts.timeout
        for client in self.clients:
            if client is not None and client.busy and now - client.sent > timeout:
                client._fail()  # connection_lost records the error
        # a request that waited longer than the timeout for a connection has failed too
        backlog = self.backlog
        while backlog and now - backlog[0] > timeout:
            self._record_error(now - backlog.popleft())
        if self.recording and not self.generating:
            self._maybe_finish()
        if self.recording:
            self.pipe.send(("progress", self.completed, self.error_count, self.late))
        if self.stopping and now > self.stop_deadline:
            for client in self.clients:
                if client is not None and client.busy:
                    client._fail()
            self.finished.set()
            return
        self.loop.call_later(0.05, self._sweep)

    def _stop_generating(self) -> None:
        self.generating = False
        if not self.backlog:
            self._maybe_finish()

    def stop(self) -> None:
        """Stop sending (abort or interrupt); requests in flight may still complete."""
        self.generating = False
        self.backlog.clear()
        self.stopping = True
        self.stop_deadline = time.perf_counter() + self.opts.timeout
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.generating or self.backlog:
            return
        if any(c is not None and c.busy for c in self.clients):
            return
        if not self.recording:
            return
        self.stopping = True
        self.finished.set()

    # lifecycle ------------------------------------------------------------------------------

    async def warm_up(self) -> str | None:
        self.connect_failure = ""
        clients: list[_Client] = []
        for slot in range(self.nconns):
            opened = await self.open(slot)
            if opened is None:
                return f"error {SOCKET_ERROR} for {self.opts.url}: {self.connect_failure}"
            clients.append(opened)
        if self.opts.warmup:
            self.warmup_left = len(clients)
            for client in clients:
                client.send(time.perf_counter())
            try:
                await asyncio.wait_for(self.warmup_done.wait(), self.opts.timeout)
            except TimeoutError:
                return (
                    f"error {SOCKET_ERROR} for {self.opts.url}: warmup timed out after {self.opts.timeout:g}s"
                )
            if self.warmup_failure:
                return self.warmup_failure
            # each warmed-up connection is already in self.idle (via on_response)
        else:
            self.idle.extend(clients)
        return None

    async def run(self, t0: float) -> None:
        opts = self.opts
        self.t0 = t0
        planned = opts.planned_duration
        if opts.stages:
            self.end_at = t0 + planned
        elif not opts.exactly and opts.duration > 0:
            self.end_at = t0 + opts.duration
        self.recording = True
        self.generating = True
        self.loop.add_reader(self.pipe.fileno(), self._on_pipe)
        delay = t0 - time.perf_counter()
        if opts.fixed_rate:
            self.loop.call_later(max(delay, 0.0), self._tick)
        else:
            if opts.exactly:
                share, extra = divmod(opts.exactly, self.nworkers)
                self.remaining = share + (1 if self.index < extra else 0)
            else:
                self.remaining = -1
            await asyncio.sleep(max(delay, 0.0))
            idle, self.idle = self.idle, []
            for ready_client in idle:
                self._became_idle(ready_client)
            if self.remaining == 0:
                self._stop_generating()
        self.loop.call_later(0.05, self._sweep)
        await self.finished.wait()
        self.loop.remove_reader(self.pipe.fileno())
        for client in self.clients:
            if client is not None:
                client.close()

    def _on_pipe(self) -> None:
        try:
            message = self.pipe.recv()
        except EOFError:
            message = ("stop",)
        if message[0] == "stop":
            self.stop()

    def result(self, elapsed: float) -> dict[str, Any]:
        return {
            "corrected": self.corrected.to_compact(),
            "uncorrected": (self.uncorrected if self.fixed_rate else self.corrected).to_compact(),
            "errors": self.errors.to_compact(),
            "connect": self.connect_times.to_compact(),
            "sizes": self.sizes.to_wire(),
            "header_sizes": self.header_sizes.to_wire(),
            "codes": [[k, v] for k, v in self.codes.items()],
            "ip_count": self.ip_count,
            "sockets": self.sockets,
            "late": self.late,
            "skipped": self.skipped,
            "elapsed": elapsed,
        }


def _worker_main(index: int, nworkers: int, opts: LoadOptions, nconns: int, pipe: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and tells us to stop
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    asyncio.run(_worker_async(index, nworkers, opts, nconns, pipe))


async def _worker_async(index: int, nworkers: int, opts: LoadOptions, nconns: int, pipe: Connection) -> None:
    worker = _Worker(index, nworkers, opts, nconns, pipe)
    failure = await worker.warm_up()
    if failure:
        pipe.send(("error", failure))
        return
    pipe.send(("ready",))
    message = pipe.recv()  # blocking on purpose: nothing else to do until the start signal
    if message[0] != "start":
        return
    t0 = message[1]
    await worker.run(t0)
    elapsed = time.perf_counter() - t0
    pipe.send(("result", worker.result(elapsed)))


# --------------------------------------------------------------------------------------------
# parent side


@dataclass
class Progress:
    elapsed: float
    completed: int
    errors: int
    late: int


@dataclass
class LoadResult:
    opts: LoadOptions
    start_time: float  # wall clock
    elapsed: float
    corrected: Histogram
    uncorrected: Histogram
    errors: Histogram
    connect: Histogram
    sizes: ValueCounter
    header_sizes: ValueCounter
    codes: dict[int, int]
    ip_count: dict[str, int]
    sockets: list[int]
    late: int
    skipped: int
    aborted_on: int | None
    interrupted: bool

    @property
    def count(self) -> int:
        return self.corrected.count

    @property
    def actual_qps(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(n for code, n in self.codes.items() if not 200 <= code < 300)


def _split(total: int, parts: int) -> list[int]:
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def run_load(
    opts: LoadOptions,
    on_progress: Callable[[Progress], None] | None = None,
    on_started: Callable[[], None] | None = None,
) -> LoadResult:
    """Run a load test in ``opts.workers`` processes and merge their results.

    Raises LoadError when the run cannot start. ^C (KeyboardInterrupt) stops the run early and
    still returns what was measured, as Fortio does.
    """
    ctx = multiprocessing.get_context("spawn")
    nworkers = opts.workers
    conns = _split(opts.connections, nworkers)
    pipes: list[Connection] = []
    procs = []
    for index in range(nworkers):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            args=(index, nworkers, opts, conns[index], child_end),
            name=f"meshpilot-bench-worker-{index}",
            daemon=True,
        )
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    try:
        return _drive(opts, pipes, procs, on_progress, on_started)
    except BaseException:
        # A worker that is ready waits for its start signal; without a word it would only go when
        # killed after the join timeout below, 2 s each. "stop" ends it (and one still warming up
        # finds it queued when it is done). A pipe whose worker has gone just refuses the word.
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        raise
    finally:
        for proc in procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        for pipe in pipes:
            pipe.close()


def _drive(
    opts: LoadOptions,
    pipes: list[Connection],
    procs: list[Any],
    on_progress: Callable[[Progress], None] | None,
    on_started: Callable[[], None] | None,
) -> LoadResult:
    # 1. every worker connects and warms up
    ready: set[int] = set()
    deadline = time.monotonic() + 30 + opts.timeout
    while len(ready) < len(pipes):
        if time.monotonic() > deadline:
            raise LoadError("workers did not become ready in time")
        for obj in wait([p for i, p in enumerate(pipes) if i not in ready], timeout=0.5):
            pipe = cast(Connection, obj)
            i = pipes.index(pipe)
            try:
                message = pipe.recv()
            except EOFError:
                raise LoadError(f"worker {i} exited during warmup (exit code {procs[i].exitcode})") from None
            if message[0] == "error":
                raise LoadError(message[1])
            ready.add(i)
    # 2. start all of them at the same instant (perf_counter is CLOCK_MONOTONIC: shared by processes)
    start_wall = time.time() + 0.05
    t0 = time.perf_counter() + 0.05
    for pipe in pipes:
        pipe.send(("start", t0))
    if on_started is not None:
        on_started()
    results: dict[int, dict[str, Any]] = {}
    progress: dict[int, tuple[int, int, int]] = {}
    aborted_on: int | None = None
    interrupted = False
    stop_sent = False

    def stop_all() -> None:
        nonlocal stop_sent
        if stop_sent:
            return
        stop_sent = True
        for i, pipe in enumerate(pipes):
            if i not in results:
                try:
                    pipe.send(("stop",))
                except OSError:
                    pass

    while len(results) < len(pipes):
        try:
            ready_pipes = wait([p for i, p in enumerate(pipes) if i not in results], timeout=0.25)
            for obj in ready_pipes:
                pipe = cast(Connection, obj)
                i = pipes.index(pipe)
                try:
                    message = pipe.recv()
                except EOFError:
                    raise LoadError(f"worker {i} died (exit code {procs[i].exitcode})") from None
                kind = message[0]
                if kind == "progress":
                    progress[i] = (message[1], message[2], message[3])
                elif kind == "abort":
                    aborted_on = message[1]
                    stop_all()
                elif kind == "result":
                    results[i] = message[1]
            if on_progress is not None:
                on_progress(
                    Progress(
                        elapsed=max(0.0, time.perf_counter() - t0),
                        completed=sum(p[0] for p in progress.values()),
                        errors=sum(p[1] for p in progress.values()),
                        late=sum(p[2] for p in progress.values()),
                    )
                )
        except KeyboardInterrupt:
            interrupted = True
            stop_all()
    elapsed = max(r["elapsed"] for r in results.values())
    ordered = [results[i] for i in range(len(pipes))]
    codes: dict[int, int] = {}
    ip_count: dict[str, int] = {}
    for r in ordered:
        for code, n in r["codes"]:
            codes[code] = codes.get(code, 0) + n
        for ip, n in r["ip_count"].items():
            ip_count[ip] = ip_count.get(ip, 0) + n

    def merged(key: str) -> Histogram:
        compacts: list[CompactHistogram] = [r[key] for r in ordered]
        return merge_all(Histogram.from_compact(c) for c in compacts)

    sizes = ValueCounter()
    header_sizes = ValueCounter()
    for r in ordered:
        sizes.merge(ValueCounter.from_wire(r["sizes"]))
        header_sizes.merge(ValueCounter.from_wire(r["header_sizes"]))
    return LoadResult(
        opts=opts,
        start_time=start_wall,
        elapsed=elapsed,
        corrected=merged("corrected"),
        uncorrected=merged("uncorrected"),
        errors=merged("errors"),
        connect=merged("connect"),
        sizes=sizes,
        header_sizes=header_sizes,
        codes=codes,
        ip_count=ip_count,
        sockets=[n for r in ordered for n in r["sockets"]],
        late=sum(r["late"] for r in ordered),
        skipped=sum(r["skipped"] for r in ordered),
        aborted_on=aborted_on,
        interrupted=interrupted,
    )
