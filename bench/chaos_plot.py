"""The chaos run's picture: converged fraction over time against the faults and /readyz, as a
self-contained SVG (no plotting library: a few rectangles and one polyline).

    .venv/bin/python bench/chaos_plot.py <workdir>/chaos-timeline.txt   # again, from a timeline
"""

from __future__ import annotations

import re
import sys
from html import escape
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 960, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 24, 72  # margins: axis labels, fault names


def plot_svg(path: Path, *, t0: float, t_end: float, converged: list[tuple[float, float]],
             faults: list[dict[str, Any]], ready: list[tuple[float, int, list[str]]],
             title: str) -> None:
    """converged: (monotonic time, fraction 0..1); faults: {"kind", "start", "end"};
    ready: /readyz samples (time, status code, failing checks). Times from t0 to t_end."""
    span = max(t_end - t0, 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * min(max(t - t0, 0.0), span) / span

    # The fraction rarely drops far: the axis starts at the lowest 5 % step below it (≤ 90 %).
    lowest = min((frac for _t, frac in converged), default=1.0)
    floor = min(0.9, int(lowest * 20) / 20)

    def y(frac: float) -> float:
        return TOP + plot_h * (1.0 - (frac - floor) / (1.0 - floor))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT}" y="14" font-size="13">{escape(title)}</text>']
    for i, f in enumerate(faults):  # shaded spans, names staggered below the axis
        x0, x1 = x(f["start"]), x(f["end"])
        out.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" '
                   f'height="{plot_h}" fill="#f4b183" fill-opacity="0.45"/>')
        out.append(f'<text x="{x0:.1f}" y="{TOP + plot_h + 26 + 12 * (i % 3)}" '
                   f'fill="#a0522d">{escape(f["kind"])}</text>')
    for t, code, _failing in ready:  # a red tick on the band under the plot: /readyz 503
        if code != 200 and t0 <= t <= t_end:
            out.append(f'<rect x="{x(t):.1f}" y="{TOP + plot_h + 4}" width="2" height="8" '
                       f'fill="#c00000"/>')
    for frac in (floor, (floor + 1.0) / 2, 1.0):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(frac):.1f}" '
                   f'y2="{y(frac):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(frac) + 4:.1f}" text-anchor="end">'
                   f'{frac:.0%}</text>')
    step = 60.0 if span > 300 else 30.0
    tick = 0.0
    while tick <= span:
        out.append(f'<text x="{x(t0 + tick):.1f}" y="{TOP + plot_h + 66}" '
                   f'text-anchor="middle">{tick:.0f} s</text>')
        tick += step
    points = " ".join(f"{x(t):.1f},{y(frac):.1f}" for t, frac in converged if t0 <= t <= t_end)
    if points:
        out.append(f'<polyline points="{points}" fill="none" stroke="#1f4e79" '
                   f'stroke-width="2"/>')
    out.append(f'<text x="{LEFT + plot_w}" y="{TOP - 6}" text-anchor="end">blue: bots '
               "matching Mongo · orange: a fault held · red ticks: /readyz 503</text>")
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


LINE = re.compile(r"^\S+ \+\s*(?P<t>[\d.]+)s  (?P<text>.*)$")


def from_timeline(path: Path) -> None:
    """Plots a finished run again from its timeline alone (converged samples, faults and
    /readyz changes are all in it), next to it as chaos-timeline.svg."""
    converged: list[tuple[float, float]] = []
    faults: list[dict[str, Any]] = []
    changes: list[tuple[float, int]] = []
    start = end = 0.0
    title = path.parent.name
    began: tuple[float, str] | None = None
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t, text = float(m["t"]), m["text"]
        if text.startswith("seed "):
            title = "chaos: " + ", ".join(text.split(", ")[:3])
        elif text.startswith("converged before the storm"):
            start = t
            converged.append((t, 1.0))
        elif (c := re.match(r"converged (\d+)/(\d+)", text)) and int(c[2]):
            converged.append((t, int(c[1]) / int(c[2])))
        elif text.startswith("FAULT "):
            began = (t, text.split(":")[0].removeprefix("FAULT "))
        elif text.startswith("fault ") and " over after " in text and began:
            faults.append({"kind": began[1], "start": began[0], "end": t})
            began = None
        elif text.startswith("readyz "):
            changes.append((t, int(text.split()[1])))
        elif text.startswith("after the storm") and "'mismatched': 0" in text:
            end = t
            converged.append((t, 1.0))
    ready: list[tuple[float, int, list[str]]] = []
    for i, (t, code) in enumerate(changes):  # every 2 s, as polled, until the next change
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        while t < until:
            ready.append((t, code, []))
            t += 2.0
    plot_svg(path.with_suffix(".svg"), t0=start, t_end=end or converged[-1][0],
             converged=converged, faults=faults, ready=ready, title=title)


if __name__ == "__main__":
    from_timeline(Path(sys.argv[1]))
