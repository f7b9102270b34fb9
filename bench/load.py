"""Load test: gunicorn on 127.0.0.1, 16 concurrent clients per scenario for a bounded time.

Scenarios: product pages (GET /products/<id>/, which render "Similar items"), the similar-items API
(GET /api/products/<id>/similar) and photo search (POST /api/search with a 28 x 28 PNG). Reports
requests/s, p50/p99 latency and errors (anything but 200, or a failed connection).

The client is Python threads with one keep-alive http.client connection each, on the same machine
as the server, so the two share the CPU. gunicorn runs with production settings (DEBUG=0) and with
SEARCH_RATE_LIMIT raised (bench.common.bench_env) so the per-client photo-search limit does not
turn the capacity test into a rate-limit test.

    python bench/load.py                          # 60k catalogue, 20 s per scenario
    python bench/load.py --quick                  # 5k catalogue, 5 s per scenario
    python bench/load.py --workers 4 --threads 4 --clients 16 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT,
    LoadSampler,
    configure,
    percentiles_ms,
    static_collect,
    subprocess_env,
    table,
    write_report,
)

HOST = "127.0.0.1"


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_gunicorn(*, quick: bool, port: int, workers: int, threads: int) -> subprocess.Popen:
    logs = ROOT / "var" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "config.wsgi:application",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--keep-alive",
        "30",
        "--timeout",
        "120",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    out = open(logs / "gunicorn.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=subprocess_env(quick=quick), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited; see var/bench-logs/gunicorn.log")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    stop_gunicorn(proc)
    raise RuntimeError("gunicorn did not answer within 120 s")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n8\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def run_scenario(port: int, make_request, *, clients: int, seconds: float) -> dict:
    """`clients` threads, each with its own keep-alive connection, for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[dict[str, int]] = [{} for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        barrier.wait()
        while time.perf_counter() < stop_at[0]:
            method, path, body, headers = make_request(rng)
            t = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=60)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
            latencies[i].append(time.perf_counter() - t)
            if status != 200:
                errors[i][str(status)] = errors[i].get(str(status), 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    all_latencies = [x for xs in latencies for x in xs]
    error_counts: dict[str, int] = {}
    for e in errors:
        for k, v in e.items():
            error_counts[k] = error_counts.get(k, 0) + v
    return {
        "requests": len(all_latencies),
        "seconds": round(elapsed, 2),
        "rps": round(len(all_latencies) / elapsed, 1),
        "latency_ms": percentiles_ms(all_latencies),
        "errors": sum(error_counts.values()),
        "error_kinds": error_counts,
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 5k catalogue, 5 s per scenario")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, help="per scenario (default 20; 5 with --quick)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (4)")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker (4)")
    parser.add_argument("--only", default="", help="comma-separated scenarios: page,similar,photo")
    args = parser.parse_args(argv)
    seconds = args.seconds or (5 if args.quick else 20)
    configure(quick=args.quick)
    static_collect()
    from PIL import Image

    from catalog.fashion_mnist import load_split
    from catalog.models import Product
    from search.serving.versions import active_model_version

    version = active_model_version()
    if version is None:
        print("No active model in the bench database: run bench/setup_data.py first.", file=sys.stderr)
        return 1
    ids = list(Product.objects.values_list("id", flat=True))
    pngs = []
    for arr in load_split("test")[0][:200]:
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format="PNG")
        pngs.append(multipart(buffer.getvalue()))

    scenarios = {
        "page": ("product page GET /products/<id>/", lambda rng: ("GET", f"/products/{rng.choice(ids)}/", None, {})),
        "similar": (
            "similar API GET /api/products/<id>/similar",
            lambda rng: ("GET", f"/api/products/{rng.choice(ids)}/similar", None, {}),
        ),
        "photo": (
            "photo search POST /api/search (28x28 PNG)",
            lambda rng: (lambda body_type: ("POST", "/api/search", body_type[0], {"Content-Type": body_type[1]}))(
                rng.choice(pngs)
            ),
        ),
    }
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or list(scenarios)
    port = free_port()
    started = time.monotonic()
    log(f"gunicorn {args.workers} workers x {args.threads} threads on {HOST}:{port}")
    proc = start_gunicorn(quick=args.quick, port=port, workers=args.workers, threads=args.threads)
    rows = []
    try:
        # Warm every worker: imports, database connections, and the model (loaded on first photo search).
        log("warming up")
        for key in wanted:
            run_scenario(port, scenarios[key][1], clients=args.clients, seconds=min(5.0, seconds))
        for key in wanted:
            label, make = scenarios[key]
            log(f"{label}: {args.clients} clients, {seconds:.0f} s")
            with LoadSampler(every=1.0) as load:
                result = run_scenario(port, make, clients=args.clients, seconds=seconds)
            rows.append({"scenario": label, "key": key, **result, "load_average": load.summary()})
            log(f"  {result['rps']} req/s, p50 {result['latency_ms']['p50']} ms, errors {result['errors']}")
    finally:
        stop_gunicorn(proc)
    print()
    print(
        table(
            rows,
            [
                ("scenario", f"{args.clients} clients x {seconds:.0f} s", "s"),
                ("requests", "requests", "d"),
                ("rps", "req/s", ".1f"),
                ("latency_ms.p50", "p50 ms", ".1f"),
                ("latency_ms.p99", "p99 ms", ".1f"),
                ("errors", "errors", "d"),
                ("load_average.mean", "load avg", ".1f"),
            ],
        )
    )
    path = write_report(
        "load",
        quick=args.quick,
        argv=argv,
        started=started,
        load={key: r["load_average"] for key, r in zip(wanted, rows)},
        server={
            "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread), 127.0.0.1",
            "settings": "DEBUG=0; SEARCH_RATE_LIMIT raised to " + os.environ.get("SEARCH_RATE_LIMIT", "?"),
            "hnsw_ef_search": int(os.environ.get("HNSW_EF_SEARCH", 100)),
        },
        client={
            "clients": args.clients,
            "seconds_per_scenario": seconds,
            "kind": "threads + http.client keep-alive",
            "same_machine": True,
        },
        catalogue={"products": len(ids), "model_version": version.pk},
        scenarios=rows,
        errors_total=sum(r["errors"] for r in rows),
    )
    print(f"\nwall time {time.monotonic() - started:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
