"""The 10M run's webhook measure, run small: it appends every engagement event once, in
run.py's batches, from a file rather than from memory, and leaves nothing behind."""

from __future__ import annotations

import io
import os
import sys

import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import scale  # noqa: E402
from run import batch_sizes  # noqa: E402
from workload import ENGAGEMENT, workload  # noqa: E402


def test_the_webhook_measure_appends_the_engagement_events_in_run_py_s_batches(tmp_path, monkeypatch):
    source = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) + b"\n" for e in workload(3000)]
    source.write_bytes(b"".join(lines))
    engagement = [line for line in lines if orjson.loads(line)["type"] in ENGAGEMENT]
    calls: list[bytes] = []
    append = scale.ledger.append_input

    def recording(log, stream):
        data = stream.read()
        calls.append(data)
        return append(log, io.BytesIO(data))

    monkeypatch.setattr(scale.ledger, "append_input", recording)
    rate, n = scale.webhooks_from_file(str(tmp_path), str(source))
    assert n == len(engagement) > 100 and rate > 0
    # The first call appends every other event; each later one is a batch of webhooks.
    batches = calls[1:]
    assert b"".join(batches) == b"".join(engagement)
    assert [b.count(b"\n") for b in batches] == batch_sizes(len(engagement))
    assert {p.name for p in tmp_path.iterdir()} == {"events.jsonl"}
