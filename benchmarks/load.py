"""Loopback load test of the HTTP API: several client processes post webhook-shaped batches
(1 to 100 provider events, ~5% of them resent) to `flowledger serve` for a bounded time; then
every acknowledged event must be stored exactly once.

    python benchmarks/load.py --clients 4 --seconds 20 [--store postgresql://…] [--sendgrid]

With --sendgrid the batches are signed SendGrid Event Webhook posts to /v1/webhooks/sendgrid.

Prints the acknowledged events per second and the request latency p50/p99.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from flowledger.store import open_log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sendgrid_batch(rng: random.Random, n: int, start: int, size: int) -> list[dict]:
    now = int(time.time())
    return [
        {
            "email": "user@example.com",
            "timestamp": now,
            "event": rng.choice(["delivered", "open", "processed"]),
            "sg_event_id": f"load-{n}-{start + k}",
            "sg_message_id": f"sg-{rng.randrange(5000)}.filter",
            "flowledger_message_id": f"msg-{rng.randrange(5000)}",
        }
        for k in range(size)
    ]


def _drive(
    url: str, seconds: float, max_requests: int, out: str, headers: dict[str, str], make: Any
) -> None:
    """Post what ``make(rng, sent)`` builds — (path, body, headers, ids) — until the time or
    the request budget runs out; write what was acknowledged, latencies and errors."""
    rng = random.Random(out)
    acked: list[str] = []
    latencies: list[float] = []
    errors = 0
    sent: list[dict] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline and len(latencies) < max_requests:
            path, batch, body, extra, ids = make(rng, sent)
            started = time.perf_counter()
            r = http.post(path, content=body, headers={"Content-Type": "application/json", **extra})
            latencies.append(time.perf_counter() - started)
            if r.status_code == 200:
                acked += ids
                sent += batch
            else:
                errors += 1
    with open(out, "w") as f:
        json.dump({"acked": acked, "latencies": latencies, "errors": errors}, f)


def sendgrid_client(n: int, url: str, pem: bytes, seconds: float, max_requests: int, out: str) -> None:
    """Signed SendGrid Event Webhook batches to /v1/webhooks/sendgrid (~30% carry resends)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = serialization.load_pem_private_key(pem, None)
    counter = [0]

    def make(rng: random.Random, sent: list[dict]) -> tuple[str, list[dict], bytes, dict[str, str], list[str]]:
        batch = _sendgrid_batch(rng, n, counter[0], rng.randint(1, 100))
        counter[0] += len(batch)
        if sent and rng.random() < 0.3:
            batch += rng.sample(sent, min(len(sent), 3))  # SendGrid retried these
        body = json.dumps(batch).encode()
        ts = str(int(time.time()))
        sig = base64.b64encode(private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        signed = {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": ts}
        return "/v1/webhooks/sendgrid", batch, body, signed, ["sendgrid:" + e["sg_event_id"] for e in batch]

    _drive(url, seconds, max_requests, out, {}, make)


def client(n: int, url: str, key: str, seconds: float, max_requests: int, out: str) -> None:
    """flowledger's own provider events to /v1/events (~5% of them resent)."""
    counter = [0]

    def make(rng: random.Random, sent: list[dict]) -> tuple[str, list[dict], bytes, dict[str, str], list[str]]:
        batch = []
        for _ in range(rng.randint(1, 100)):
            if sent and rng.random() < 0.05:
                batch.append(rng.choice(sent))  # the provider retried this webhook
                continue
            counter[0] += 1
            kind = rng.choice(["message.delivered", "message.opened", "message.read", "message.sent"])
            batch.append(
                {"id": f"load-{n}-{counter[0]}", "type": kind, "occurred_at": "2026-11-01T09:00:00Z", "message_id": f"msg-{rng.randrange(5000)}"}
            )
        return "/v1/events", batch, json.dumps(batch).encode(), {}, [e["id"] for e in batch]

    _drive(url, seconds, max_requests, out, {"X-API-Key": key}, make)


def run(clients: int, seconds: float, store: str | None = None, max_requests: int = 10**9, sendgrid: bool = False) -> dict:
    """Start a server, load it, check what it stored; returns the figures."""
    folder = tempfile.mkdtemp(prefix="flload-")
    store = store or os.path.join(folder, "load.db")
    exe = [sys.executable, "-c", "from flowledger.cli import main; main()"]
    env = dict(os.environ)
    pem = b""
    if sendgrid:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        env["FLOWLEDGER_SENDGRID_PUBLIC_KEY"] = base64.b64encode(public).decode()
    key = subprocess.run(
        [*exe, "--store", store, "keys", "create", "--name", "load", "--scope", "write"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    port = _free_port()
    server = subprocess.Popen(
        [*exe, "--store", store, "serve", "--port", str(port), "--no-follow"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        outs = [os.path.join(folder, f"client-{n}.json") for n in range(clients)]
        procs = [
            multiprocessing.Process(
                target=sendgrid_client if sendgrid else client,
                args=(n, url, pem if sendgrid else key, seconds, max_requests, outs[n]),
            )
            for n in range(clients)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    acked: list[str] = []
    latencies: list[float] = []
    errors = 0
    for out in outs:
        with open(out) as f:
            data = json.load(f)
        acked += data["acked"]
        latencies += data["latencies"]
        errors += data["errors"]
    log = open_log(store, create=False)
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT state FROM stored_events")
        stored = [json.loads(bytes(r[0]))["id"] for r in c.fetchall()]
    log.close()
    unique = set(acked)
    latencies.sort()
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": errors,
        "acknowledged": len(acked),
        "unique_acknowledged": len(unique),
        "stored": len(stored),
        "stored_once": len(stored) == len(set(stored)),
        "all_acknowledged_stored": unique <= set(stored),
        "events_per_second": round(len(acked) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 1) if latencies else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--store", default=None, help="A store URL (default: a new SQLite file).")
    parser.add_argument("--sendgrid", action="store_true", help="Post signed SendGrid webhooks instead.")
    args = parser.parse_args()
    print(json.dumps(run(args.clients, args.seconds, args.store, sendgrid=args.sendgrid), indent=2))
