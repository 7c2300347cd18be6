"""Server-made SVG charts (pure functions, no I/O, no script): a trend line and bars.

Every chart is plain SVG markup sized by its ``viewBox`` so CSS scales it to the phone or
the desktop; text is escaped; each chart has a ``<title>`` and ``role="img"`` with an
``aria-label`` so a screen reader says what it shows. Missing values leave a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _svg(parts: list[str]) -> Markup:
    # every text and attribute value above went through escape()
    return Markup("".join(parts))  # noqa: S704


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def trend(
    points: Sequence[tuple[str, float | None]],
    *,
    label: str,
    lo: float = 0.0,
    hi: float = 100.0,
    bands: Sequence[tuple[float, str]] = (),
    width: int = 640,
    height: int = 180,
) -> Markup:
    """A line over days: ``points`` are (x label, value or ``None``) in order.

    Args:
        label: what the chart shows (title and aria-label).
        lo, hi: the value range of the y axis.
        bands: (threshold, name) lines drawn across, e.g. the index levels.
    """
    pad_l, pad_r, pad_t, pad_b = 34, 8, 10, 24
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = len(points)

    def x(i: int) -> float:
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return pad_t + h * (1 - (v - lo) / (hi - lo))

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<rect class="plot" x="{pad_l}" y="{pad_t}" width="{w}" height="{h}"/>',
    ]
    for value, name in bands:
        yy = _f(y(value))
        out.append(f'<line class="band" x1="{pad_l}" x2="{pad_l + w}" y1="{yy}" y2="{yy}"/>')
        out.append(
            f'<text class="band-label" x="{pad_l + w - 2}" y="{_f(y(value) - 3)}" '
            f'text-anchor="end">{escape(name)}</text>'
        )
    for v in (lo, (lo + hi) / 2, hi):
        out.append(
            f'<text class="axis" x="{pad_l - 4}" y="{_f(y(v) + 4)}" '
            f'text-anchor="end">{_f(v)}</text>'
        )
    segments: list[list[tuple[float, float]]] = [[]]
    for i, (_, val) in enumerate(points):
        if val is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x(i), y(val)))
    for seg in segments:
        if len(seg) > 1:
            d = " ".join(f"{_f(a)},{_f(b)}" for a, b in seg)
            out.append(f'<polyline class="line" points="{d}"/>')
        for a, b in seg:
            out.append(f'<circle class="dot" cx="{_f(a)}" cy="{_f(b)}" r="2.5"/>')
    if n:
        step = max(1, n // 6)
        for i in range(0, n, step):
            out.append(
                f'<text class="axis" x="{_f(x(i))}" y="{height - 6}" '
                f'text-anchor="middle">{escape(points[i][0])}</text>'
            )
    out.append("</svg>")
    return _svg(out)


def bars(
    rows: Sequence[tuple[str, float, str]],
    *,
    label: str,
    width: int = 640,
    bar: int = 22,
    target: tuple[float, str] | None = None,
) -> Markup:
    """Horizontal bars: ``rows`` are (name, share 0..1 of the longest bar, text at the end);
    ``target`` (share, name) is drawn as a line across all bars."""
    gap, name_w = 6, 260
    height = max(1, len(rows)) * (bar + gap) + gap
    w = width - name_w - 70
    out = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for i, (name, share, text) in enumerate(rows):
        top = gap + i * (bar + gap)
        length = max(0.0, min(1.0, share)) * w
        short = name if len(name) <= 30 else name[:29] + "…"
        out.append(
            f'<text class="bar-name" x="{name_w - 6}" y="{top + bar * 0.7:.1f}" '
            f'text-anchor="end">{escape(short)}</text>'
        )
        out.append(
            f'<rect class="bar" x="{name_w}" y="{top}" width="{_f(length)}" height="{bar}"/>'
        )
        out.append(
            f'<text class="bar-value" x="{_f(name_w + length + 4)}" '
            f'y="{top + bar * 0.7:.1f}">{escape(text)}</text>'
        )
    if target is not None:
        xx = _f(name_w + max(0.0, min(1.0, target[0])) * w)
        out.append(
            f'<line class="band target" x1="{xx}" x2="{xx}" y1="0" y2="{height}">'
            f"<title>{escape(target[1])}</title></line>"
        )
    out.append("</svg>")
    return _svg(out)
