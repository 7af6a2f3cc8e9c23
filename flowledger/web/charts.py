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
        seconds = "running" if s["finished_at"] is None else f"{s['duration_seconds']:g} s"
        parts.append(f'<text x="0" y="{y + 13}">{escape(s["step"])} #{s["attempt"]}</text>')
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" rx="3" fill="{COLORS.get(s["status"], "#98a2b3")}">'
            f'<title>{escape(s["step"])} #{s["attempt"]}: {escape(s["status"])}, {escape(seconds)}</title></rect>'
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
    edges_from: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(stats["edges"], key=lambda e: -(e["completed"] + e["failed"] + e["running"])):
        edges_from.setdefault(e["from"], []).append(e)
    i = 0
    while i < len(order):
        for e in edges_from.get(order[i], []):
            if e["to"] not in order:
                order.append(e["to"])
        i += 1
    order += [n for n in nodes if n not in order]
    by_step = {n["step"]: n for n in stats["nodes"]}
    box_w, box_h, gap, top = 170, 54, 60, 10
    pos = {n: (10 + k * (box_w + gap), top) for k, n in enumerate(order)}
    width = 20 + len(order) * (box_w + gap)
    parts = [
        f'<svg role="img" aria-label="Workflow graph with per-node and per-edge counts" width="{width}" height="{box_h + 70}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#667085"/></marker></defs>',
    ]
    for e in stats["edges"]:
        if e["from"] not in pos or e["to"] not in pos:
            continue
        (x1, y1), (x2, _) = pos[e["from"]], pos[e["to"]]
        forward = x2 > x1
        sx, ex = (x1 + box_w, x2) if forward else (x1 + box_w / 2, x2 + box_w / 2)
        y = y1 + box_h / 2 if forward else y1 + box_h + 20
        label = f'{e["completed"]} / {e["failed"]} / {e["running"]}'
        parts.append(f'<line x1="{sx}" y1="{y}" x2="{ex}" y2="{y}" stroke="#667085" marker-end="url(#arrow)"></line>')
        parts.append(f'<text x="{(sx + ex) / 2 - 24:.0f}" y="{y - 4}">{escape(label)}</text>')
    for n, (x, y) in pos.items():
        c = by_step[n]
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#fff" stroke="#98a2b3"></rect>')
        parts.append(f'<text x="{x + 8}" y="{y + 18}" font-weight="600">{escape(n)}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 34}">{escape(c.get("step_type") or "")}</text>')
        parts.append(
            f'<text x="{x + 8}" y="{y + 48}"><tspan fill="{COLORS["completed"]}">{c["completed"]}</tspan> / '
            f'<tspan fill="{COLORS["failed"]}">{c["failed"]}</tspan> / <tspan fill="{COLORS["running"]}">{c["running"]}</tspan></text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def over_time(rows: list[tuple[str, str, int]]) -> str:
    """Runs per day, stacked by status."""
    if not rows:
        return ""
    days = sorted({d for d, _, _ in rows})
    totals = {d: 0 for d in days}
    for d, _, n in rows:
        totals[d] += n
    top = max(totals.values()) or 1
    bar, gap, height = 36, 14, 160
    width = len(days) * (bar + gap) + 40
    parts = [f'<svg role="img" aria-label="Runs by status over time" width="{width}" height="{height + 40}">']
    order = ["completed", "failed", "cancelled", "running", "paused", "pending"]
    for k, day in enumerate(days):
        x = 20 + k * (bar + gap)
        y = height
        for status in order:
            n = sum(c for d, s, c in rows if d == day and s == status)
            if not n:
                continue
            h = n / top * (height - 10)
            y -= h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{COLORS[status]}"><title>{day}: {n} {status}</title></rect>')
        parts.append(f'<text x="{x}" y="{height + 14}">{escape(day[5:])}</text>')
        parts.append(f'<text x="{x}" y="{max(y - 4, 10):.0f}">{totals[day]}</text>')
    parts.append("</svg>")
    return "".join(parts)
