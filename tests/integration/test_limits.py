"""What one client can do to the server, against real gunicorn with real uvicorn workers:
oversized and trickling bodies, partial headers, too many connections, invented methods and
paths. Each test asserts the mechanism (answered before the body was read, closed by the
server) with a generous time bound, and prints the figure it measured."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import RegisteredModel
from tests.support.metrics import scrape
from tests.support.procs import Service

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture
def svc(start_service: Callable[..., Service], registered_model: RegisteredModel) -> Service:
    service = start_service(BEYONDFIT_BODY_TIMEOUT_SECONDS="3")
    service.wait_ready(180)
    return service


@contextlib.contextmanager
def connection(port: int, timeout: float = 20) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield s
    finally:
        s.close()


def read_response(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return data


def workers_rss(service: Service) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in service.worker_pids())


def post_headers(length: int | None, path: str = "/predict") -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{size}\r\n\r\n"
    ).encode()


def test_a_50_mb_body_gets_413_before_it_is_read(svc: Service) -> None:
    rss_before = workers_rss(svc)
    # The headers alone: the 413 comes back although no byte of the body was sent.
    with connection(svc.port) as s:
        start = time.perf_counter()
        s.sendall(post_headers(50_000_000))
        answer = read_response(s)
        elapsed = time.perf_counter() - start
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert b"over the limit of 1048576" in answer
    print(f"\n413 from Content-Length 50 MB: {elapsed * 1000:.1f} ms")
    assert elapsed < 2.0  # the service's behaviour is < 100 ms; slack for a loaded machine

    # A body sent without a length is cut once over the limit, while the client still sends.
    with connection(svc.port) as s:
        s.sendall(post_headers(None))
        chunk = b"%x\r\n%s\r\n" % (MiB, b" " * MiB)
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(50):
                s.sendall(chunk)
                sent += 1
        answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 50, "the server read the whole 50 MB"
    growth = workers_rss(svc) - rss_before
    print(f"worker RSS growth after two 50 MB requests: {growth / MiB:.1f} MiB")
    assert growth < 20 * MiB
    assert httpx.get(f"{svc.url}/health").status_code == 200


def test_v2_shape_over_the_batch_limit_gets_422_before_its_values(
    svc: Service, registered_model: RegisteredModel
) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [300000, 30], "datatype": "FP64", "data": [0.5] * 30000}]
    }
    url = f"{svc.url}/v2/models/{registered_model.name}/infer"
    with httpx.Client(timeout=30) as client:
        client.get(f"{svc.url}/health")
        start = time.perf_counter()
        r = client.post(url, json=body)
        elapsed = time.perf_counter() - start
    assert r.status_code == 422
    assert r.json()["error"] == "inputs[0].shape: 300000 rows is over the limit of 1000"
    print(f"\nV2 [300000, 30] -> 422: {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0


def test_partial_headers_idle_connections_and_late_bodies_are_closed_by_the_server(
    svc: Service,
) -> None:
    with connection(svc.port) as partial, connection(svc.port) as idle:
        start = time.monotonic()
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        assert read_response(partial) == b""  # closed by the server, no answer
        closed_after = time.monotonic() - start
        assert idle.recv(1) == b""
        idle_closed_after = time.monotonic() - start
    print(
        f"\npartial headers closed after {closed_after:.1f} s, idle after {idle_closed_after:.1f} s"
    )
    assert 8 <= closed_after < 15  # BEYONDFIT_HEADER_TIMEOUT_SECONDS, default 10
    assert idle_closed_after < 15

    # a body that stops arriving: 408 once the body deadline (3 s here) passes
    with connection(svc.port) as s:
        start = time.monotonic()
        s.sendall(post_headers(1000) + b'{"instances": [')
        answer = read_response(s)
        late = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert 2.5 <= late < 10


def test_connections_over_the_cap_are_closed_at_once(
    start_service: Callable[..., Service], registered_model: RegisteredModel
) -> None:
    svc = start_service(workers=1, BEYONDFIT_MAX_CONNECTIONS="4")
    svc.wait_ready(180)
    held = [socket.create_connection(("127.0.0.1", svc.port), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.5)
        with connection(svc.port, timeout=5) as extra:
            start = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(1) == b""
            assert time.monotonic() - start < 3
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    assert httpx.get(f"{svc.url}/health").status_code == 200


def test_health_answers_fast_while_oversized_requests_arrive(svc: Service) -> None:
    stop = threading.Event()
    refused = []

    def flood() -> None:
        while not stop.is_set():
            with connection(svc.port) as s:
                s.sendall(post_headers(50_000_000) + b" " * 65536)
                refused.append(read_response(s)[:12])

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    latencies = []
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(200):
                start = time.perf_counter()
                assert client.get(f"{svc.url}/health").status_code == 200
                latencies.append(time.perf_counter() - start)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"\n/health p99 {p99 * 1000:.1f} ms while {len(refused)} oversized requests got 413")
    assert refused
    assert all(r.startswith(b"HTTP/1.1 413") for r in refused)
    assert p99 < 0.5  # the service's behaviour is < 100 ms; slack for a loaded machine


def test_invented_methods_and_paths_add_no_series_and_no_worker_exits(
    svc: Service, tmp_path: Path
) -> None:
    def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return {
            (name, tuple(sorted((k, v) for k, v in labels.items() if k != "le")))
            for name, labels, _ in scrape(svc.url)
            if name.startswith(("http_requests_total", "http_request_duration_seconds"))
        }

    def send(first: int, n: int) -> None:
        with connection(svc.port) as s:
            for i in range(first, first + n):
                s.sendall(f"X{i}Y /made/up/{i}?q={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                reply = b""
                while b"\r\n\r\n" not in reply:
                    reply += s.recv(65536)
                head, _, rest = reply.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(rest) < length:
                    rest += s.recv(65536)

    workers = svc.worker_pids()
    send(0, 20)  # the first (other, unmatched, 404) series of each worker
    before = series()
    threads = [threading.Thread(target=send, args=(20 + k * 2500, 2500)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    after = series()
    metrics_dir = svc.workdir / f"metrics-{svc.port}"
    size = sum(p.stat().st_size for p in metrics_dir.iterdir())
    print(f"\nmetrics dir after 10,000 invented requests: {size / 1024:.0f} KiB")
    assert after == before, sorted(after - before)[:5]
    assert size < MiB
    assert svc.worker_pids() == workers
    assert "Traceback" not in svc.log_text()
    dir_bytes = [v for n, _, v in scrape(svc.url) if n == "beyondfit_metrics_dir_bytes"]
    assert dir_bytes == [float(size)] or (dir_bytes and abs(dir_bytes[0] - size) < 64 * 1024)
