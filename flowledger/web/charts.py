"""Server-drawn SVG charts: nothing loaded from anywhere, every label escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

COLORS = {
    "completed": "#1a7f37",
    "failed": "#c4320a",
    "running": "#3556d6",
    "pending": "#7a93f0",
    "idle": "#98a2b3",
    "paused": "#98a2b3",
    "stopped": "#667085",
    "cancelled": "#667085",
}


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def timeline(steps: list[dict[str, Any]], now: str) -> str:
    """Each step attempt as a bar from its start to its end, on one time scale."""
    if not steps:
        return ""
    start = min(_t(s["started_at"]) for s in steps)
    ends = [_t(s["finished_at"] or now) for s in steps]
    span = max((max(ends) - start).total_seconds(), 1.0)
    width, label_w, row = 760, 200, 22
    height = row * len(steps) + 24
    parts = [f'<svg role="img" aria-label="Step timeline, to scale" width="{width + label_w}" height="{height}" viewBox="0 0 {width + label_w} {height}">']
    for i, (s, end) in enumerate(zip(steps, ends)):
        x = label_w + (_t(s["started_at"]) - start).total_seconds() / span * width
        w = max(2.0, (end - _t(s["started_at"])).total_seconds() / span * width)
        y = i * row + 4
        # An open attempt is running, or idle while its run is paused: its status says which.
        if s["finished_at"] is None:
            seconds = f"{(end - _t(s['started_at'])).total_seconds():g} s so far"
        else:
            seconds = f"{s['duration_seconds']:g} s"
        state = "idle (the run is paused)" if s["status"] == "idle" else s["status"]
        parts.append(f'<text x="0" y="{y + 13}">{escape(s["step"])} #{s["attempt"]}</text>')
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" rx="3" fill="{COLORS.get(s["status"], "#98a2b3")}">'
            f'<title>{escape(s["step"])} #{s["attempt"]}: {escape(state)}, {escape(seconds)}</title></rect>'
        )
    parts.append(f'<text x="{label_w}" y="{height - 4}">0 s</text>')
    parts.append(f'<text x="{label_w + width - 60}" y="{height - 4}">{span:g} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def funnel(channel: str, details: dict[str, Any]) -> str:
    """queued → sent → delivered → read/opened → clicked, as bars with their counts."""
    stages = [("queued", details["total_contacts"]), ("sent", details["sent"])]
    if "delivered" in details:
        stages.append(("delivered", details["delivered"]))
    if channel == "whatsapp":
        stages.append(("read", details.get("read") or 0))
    if channel == "email":
        stages += [("opened", details.get("opened") or 0), ("clicked", details.get("clicked") or 0)]
    top = max(stages[0][1], 1)
    width, label_w, row = 480, 90, 22
    parts = [f'<svg role="img" aria-label="{escape(channel)} funnel" width="{width + label_w + 120}" height="{row * len(stages) + 4}">']
    for i, (name, n) in enumerate(stages):
        w = max(1.0, n / top * width)
        y = i * row + 2
        rate = f"{100 * n / top:.1f}%" if stages[0][1] else "–"
        parts.append(f'<text x="0" y="{y + 13}">{name}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="16" rx="3" fill="#3556d6" opacity="{1 - i * 0.12:.2f}"></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{n} ({rate})</text>')
    parts.append("</svg>")
    return "".join(parts)


BOX_CHARACTERS = 24
"""The most characters of a name a graph node's box shows (the whole name is its tooltip)."""


def _fit(name: str) -> str:
    """A name cut to fit a node's box."""
    return name if len(name) <= BOX_CHARACTERS else name[: BOX_CHARACTERS - 1] + "…"


def graph(stats: dict[str, Any]) -> str:
    """The workflow's nodes in the order runs reach them, with edge and node counts."""
    nodes = [n["step"] for n in stats["nodes"]]
    if not nodes:
        return ""
    incoming = {n: 0 for n in nodes}
    for e in stats["edges"]:
        if e["to"] in incoming:
            incoming[e["to"]] += 1
    # Order: nodes nobody leads to first, then by following the busiest edges.
    order: list[str] = sorted((n for n in nodes if incoming[n] == 0), key=str)
    # Looked up in a set: a list made the ordering quadratic (37 s for 40,000 steps).
    placed = set(order)
    edges_from: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(stats["edges"], key=lambda e: -(e["completed"] + e["failed"] + e["running"])):
        edges_from.setdefault(e["from"], []).append(e)
    i = 0
    while i < len(order):
        for e in edges_from.get(order[i], []):
            if e["to"] not in placed:
                placed.add(e["to"])
                order.append(e["to"])
        i += 1
    order += [n for n in nodes if n not in placed]
    by_step = {n["step"]: n for n in stats["nodes"]}
    box_w, box_h, gap, top = 170, 54, 60, 10
    index = {n: k for k, n in enumerate(order)}
    pos = {n: (10 + k * (box_w + gap), top) for k, n in enumerate(order)}
    drawn = [e for e in stats["edges"] if e["from"] in pos and e["to"] in pos]
    # An edge between neighbours runs in the gap between their boxes; any other (a back
    # edge, a branch skipping a node) in a lane of its own below, never behind a box.
    below = [e for e in drawn if index[e["to"]] - index[e["from"]] != 1]
    lane_h = 18
    height = top + box_h + 20 + lane_h * len(below)
    width = 20 + len(order) * (box_w + gap)
    parts = [
        f'<svg role="img" aria-label="Workflow graph with per-node and per-edge counts" width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>',
    ]
    lanes = {id(e): k for k, e in enumerate(below)}
    for e in drawn:
        (x1, y1), (x2, _) = pos[e["from"]], pos[e["to"]]
        label = escape(f'{e["completed"]} / {e["failed"]} / {e["running"]}')
        if id(e) not in lanes:
            y = y1 + box_h / 2
            parts.append(f'<line x1="{x1 + box_w}" y1="{y}" x2="{x2}" y2="{y}" stroke="#667085" marker-end="url(#arrow)"></line>')
            parts.append(f'<text x="{x1 + box_w + 4}" y="{y - 4}">{label}</text>')
            continue
        # Out of the source's bottom, along the lane, up into the target's bottom.
        lane_y = y1 + box_h + lane_h * (lanes[id(e)] + 1)
        sx, ex = x1 + box_w / 2 + 8, x2 + box_w / 2 - 8
        parts.append(
            f'<polyline points="{sx},{y1 + box_h} {sx},{lane_y} {ex},{lane_y} {ex},{y1 + box_h}" fill="none" '
            f'stroke="#667085" marker-end="url(#arrow)"></polyline>'
        )
        parts.append(f'<text x="{min(sx, ex) + 6:.0f}" y="{lane_y - 3}">{escape(_fit(e["from"]))} → {escape(_fit(e["to"]))}: {label}</text>')
    for n, (x, y) in pos.items():
        c = by_step[n]
        parts.append(f'<g><title>{escape(n)}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#fff" stroke="#98a2b3"></rect>')
        parts.append(f'<text x="{x + 8}" y="{y + 18}" font-weight="600">{escape(_fit(n))}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 34}">{escape(_fit(c.get("step_type") or ""))}</text>')
        parts.append(
            f'<text x="{x + 8}" y="{y + 48}"><tspan fill="{COLORS["completed"]}">{c["completed"]}</tspan> / '
            f'<tspan fill="{COLORS["failed"]}">{c["failed"]}</tspan> / <tspan fill="{COLORS["running"]}">{c["running"]}</tspan></text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


MAX_BARS = 62
"""The most bars the runs-over-time chart draws: past that many days it draws months, then years."""


def over_time(rows: list[tuple[str, str, int]]) -> str:
    """Runs per day (per month or year over a longer span), stacked by status: ``rows`` of
    (bucket, status, runs), a bucket a day, month or year (as :func:`flowledger.queries.runs_over_time`
    gives them)."""
    if not rows:
        return ""
    # One pass: the chart is drawn on every view of the workflow, over all its history.
    by_day: dict[str, dict[str, int]] = {}
    for d, status, n in rows:
        by_day.setdefault(d, {})
        by_day[d][status] = by_day[d].get(status, 0) + n
    # "2026-11-05" a day, "2026-11" a month, "2026" a year: coarser while too many.
    cut = max(len(d) for d in by_day)
    while cut > 4 and len({d[:cut] for d in by_day}) > MAX_BARS:
        cut = 7 if cut > 7 else 4
    label = slice(5, None) if cut == 10 else slice(None)  # a day labelled "11-05"
    buckets: dict[str, dict[str, int]] = {}
    for d, counts in by_day.items():
        bucket = buckets.setdefault(d[:cut], {})
        for status, n in counts.items():
            bucket[status] = bucket.get(status, 0) + n
    keys = sorted(buckets)
    totals = {k: sum(buckets[k].values()) for k in keys}
    top = max(totals.values()) or 1
    bar, gap, height = 36, 14, 160
    width = len(keys) * (bar + gap) + 40
    parts = [f'<svg role="img" aria-label="Runs by status over time" width="{width}" height="{height + 40}">']
    order = ["completed", "failed", "cancelled", "running", "paused", "pending"]
    for k, key in enumerate(keys):
        x = 20 + k * (bar + gap)
        y = height
        for status in order:
            n = buckets[key].get(status, 0)
            if not n:
                continue
            h = n / top * (height - 20)
            y -= h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{COLORS[status]}"><title>{escape(key)}: {n} {status}</title></rect>')
        parts.append(f'<text x="{x}" y="{height + 14}">{escape(key[label])}</text>')
        parts.append(f'<text x="{x}" y="{max(y - 4, 12):.0f}">{totals[key]}</text>')
    parts.append("</svg>")
    return "".join(parts)
