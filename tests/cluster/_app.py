"""A tiny HTTP app for the runtime and controller tests (stdlib only, runs as a pod's container).

Listens on $POD_IP:$PORT (or --host/--port). Endpoints:
  GET /        -> {"pod": POD_NAME, "version": VERSION}
  GET /env     -> the process environment as JSON
  GET /cwd     -> {"cwd": ...}
  GET /peer    -> {"peer": client address}
  GET /healthz -> 200, or 500 once the file named by --unhealthy-file exists
  GET /ready   -> 200 once the file named by --ready-file exists (or always without it)
On SIGTERM it prints "SIGTERM <epoch>" (unbuffered), stops accepting, finishes in-flight requests,
waits --term-delay seconds and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("POD_IP", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--unhealthy-file", default="")
    parser.add_argument("--term-delay", type=float, default=0.0)
    parser.add_argument(
        "--exit-after", type=float, default=-1.0, help="exit with --exit-code after this many seconds"
    )
    parser.add_argument("--exit-code", type=int, default=1)
    parser.add_argument("--start-delay", type=float, default=0.0)
    args = parser.parse_args()
    print(f"starting pod={os.environ.get('POD_NAME')} ip={args.host} port={args.port}", flush=True)
    if args.exit_after >= 0:
        time.sleep(args.exit_after)
        print(f"exiting with {args.exit_code}", flush=True)
        return args.exit_code
    time.sleep(args.start_delay)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: object) -> None:
            pass

        def _json(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/env":
                self._json(200, dict(os.environ))
            elif self.path == "/cwd":
                self._json(200, {"cwd": os.getcwd()})
            elif self.path == "/peer":
                self._json(200, {"peer": self.client_address[0]})
            elif self.path == "/healthz":
                bad = args.unhealthy_file and os.path.exists(args.unhealthy_file)
                self._json(500 if bad else 200, {"healthy": not bad})
            elif self.path == "/ready":
                print(
                    f"ready probe from {self.client_address[0]} agent={self.headers.get('User-Agent')}",
                    flush=True,
                )
                ok = not args.ready_file or os.path.exists(args.ready_file)
                self._json(200 if ok else 503, {"ready": ok})
            else:
                self._json(200, {"pod": os.environ.get("POD_NAME"), "version": os.environ.get("VERSION", "")})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = False
    server.block_on_close = True

    def on_term(_signum: int, _frame: object) -> None:
        print(f"SIGTERM {time.time():.3f}", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print("listening", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    time.sleep(args.term_delay)
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
