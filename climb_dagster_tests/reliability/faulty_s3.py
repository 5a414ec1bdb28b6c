"""A fault-injecting HTTP proxy in front of an S3 endpoint, for tests (127.0.0.1 only, bounded).

Each request is either forwarded to the upstream endpoint unchanged, or answered with a fault:
  "503"  - HTTP 503 with an S3 `ServiceUnavailable` error body (botocore retries it),
  "drop" - the connection is closed without any response (botocore retries it),
  "deny" - HTTP 403 with an S3 `AccessDenied` error body (not retried).
Which requests fail: the first `fail_first` ones, a seeded `fraction` of them (at most `max_faults`),
or every one (`always`); `methods` restricts faults to some HTTP methods (e.g. writes only).
"""

from __future__ import annotations

import http.client
import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
)


@dataclass
class FaultPlan:
    kind: str = "503"  # 503 | drop | deny
    fail_first: int = 0
    fraction: float = 0.0
    max_faults: int = 1_000
    always: bool = False
    methods: tuple[str, ...] = ()
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class FaultyS3Proxy:
    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.upstream = urlparse(upstream)
        self.plan = plan
        self.lock = threading.Lock()
        self.requests = 0
        self.faults = 0
        self.forwarded: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._decide(self.command)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in ("503", "deny"):
                    status, code, msg = (
                        (503, "ServiceUnavailable", "injected fault")
                        if fault == "503"
                        else (403, "AccessDenied", "Access Denied (injected)")
                    )
                    payload = ERROR_BODY.format(code=code, message=msg).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.forwarded.append((self.command, self.path))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # HEAD answers carry the object's size without a body: pass the upstream length on.
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self.thread.daemon = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _decide(self, method: str) -> str | None:
        plan = self.plan
        with self.lock:
            self.requests += 1
            eligible = not plan.methods or method in plan.methods
            fail = eligible and (
                plan.always
                or (self.requests <= plan.fail_first)
                or (plan.fraction > 0 and self.faults < plan.max_faults and plan.rng.random() < plan.fraction)
            )
            if fail:
                self.faults += 1
                return plan.kind
            return None

    def __enter__(self) -> FaultyS3Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
