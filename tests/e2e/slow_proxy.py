"""An HTTP proxy that answers late: every request waits DELAY_SECONDS, then goes to UPSTREAM.

The end-to-end test runs it in a pod in front of the in-cluster MLflow, so the service's
first model load is slow the way a loaded tracking server is slow (answers come, late),
rather than refused. Standard library only: it runs in the MLflow image.
"""

from __future__ import annotations

import http.server
import os
import time
import urllib.error
import urllib.request
from email.message import Message

UPSTREAM = os.environ["UPSTREAM"].rstrip("/")
DELAY = float(os.environ["DELAY_SECONDS"])
PORT = int(os.environ.get("PORT", "5000"))
#: Not forwarded: hop-by-hop headers, Host (MLflow checks it against --allowed-hosts, so the
#: upstream's own name goes), and lengths recomputed here.
SKIP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length"}  # fmt: skip


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        time.sleep(DELAY)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIP}
        request = urllib.request.Request(  # noqa: S310 - UPSTREAM is the test's http URL
            UPSTREAM + self.path, data=body, method=self.command, headers=headers
        )
        answer: Message
        try:
            with urllib.request.urlopen(request, timeout=300) as r:  # noqa: S310
                status, answer, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, answer, payload = e.code, e.headers, e.read()
        self.send_response(status)
        for key, value in answer.items():
            if key.lower() not in SKIP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # http.server's names for the method handlers
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay  # noqa: N815

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> {fmt % args}", flush=True)


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("", PORT), Handler).serve_forever()
