"""The quarterly joint review as one self-contained HTML file (pure): no script, no external resource, charts as
inline SVG, laid out to print to PDF (each section on whole pages where it fits). Every section has an id
(``summary``, ``compliance``, ``trend``, ``volume``, ``recurring``, ``breaches``, ``moves``, ``known-issues``,
``satisfaction``, ``sop``, and ``replay`` when a proposed sla.yaml was replayed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from services.review.figures import CLOCKS, Held, Recurring, Review, Week

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;color:#222;margin:0;
background:#f6f6f6}
main{max-width:60rem;margin:0 auto;padding:1.5rem;background:#fff}
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin:1.6rem 0 .6rem;border-bottom:2px solid #1a5fb4}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #ddd;vertical-align:top}th{background:#eef2f8}td.n,th.n{text-align:right}
.kpis{display:flex;flex-wrap:wrap;gap:.8rem}.kpi{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem}
.kpi b{display:block;font-size:1.4rem}.note{color:#666;font-size:.85rem}.bad{color:#b00020}.good{color:#1b7d3a}
svg text{font-size:11px;fill:#333}
section{break-inside:avoid}
@media print{body{background:#fff}main{padding:0}h2{break-after:avoid}@page{margin:1.5cm}}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _mins(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def bar_chart(items: Sequence[tuple[str, int]], title: str) -> str:
    """Horizontal bars, one per (label, value), largest first, as inline SVG."""
    if not items:
        return '<p class="note">nothing in this quarter</p>'
    rows = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    top = max(v for _, v in rows) or 1
    width, left, bar_h = 560, 150, 18
    height = len(rows) * (bar_h + 6) + 6
    bars = []
    for i, (label, value) in enumerate(rows):
        y = 6 + i * (bar_h + 6)
        w = max(1.0, (width - left - 50) * value / top)
        bars.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#1a5fb4"></rect>'
            f'<text x="{left + w + 4:.1f}" y="{y + 13}">{value}</text>'
        )
    return (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(bars)}</svg>'
    )


def line_chart(weeks: Sequence[Week], title: str) -> str:
    """MTTA and MTTR (minutes) per week as two lines, as inline SVG; weeks without a value leave a gap."""
    values = [v for w in weeks for v in (w.mtta_min, w.mttr_min) if v is not None]
    if not values:
        return '<p class="note">no ticket was acknowledged or resolved in this quarter</p>'
    width, height, left, bottom, top_pad = 560, 200, 50, 30, 10
    top = max(values) or 1.0
    step = (width - left - 10) / max(1, len(weeks) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top_pad + (height - bottom - top_pad) * (1 - v / top)

    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"></line>',
        f'<text x="{left - 4}" y="{top_pad + 4}" text-anchor="end">{escape(_mins(top))}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for i, w in enumerate(weeks):
        if i % 2 == 0:
            parts.append(
                f'<text x="{left + i * step:.1f}" y="{height - 12}" text-anchor="middle">{w.start:%m-%d}</text>'
            )
    for name, color, pick in (("MTTA", "#1a5fb4", 0), ("MTTR", "#c64600", 1)):
        points = [(i, (w.mtta_min, w.mttr_min)[pick]) for i, w in enumerate(weeks)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in points:
            if v is None:
                runs.append([])
            else:
                runs[-1].append(xy(i, v))
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"></polyline>')
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"></circle>' for x, y in run)
        legend_x = width - 150 + 70 * pick
        parts.append(f'<rect x="{legend_x}" y="2" width="10" height="10" fill="{color}"></rect>')
        parts.append(f'<text x="{legend_x + 14}" y="11">{name}</text>')
    return (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return '<p class="note">none</p>'
    th = "".join(f"<th{' class=n' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _held(cell: Held | None) -> str:
    if cell is None:
        return "–"
    return f"{_pct(cell.share)} ({cell.met}/{cell.applicable})"


def _compliance(review: Review) -> str:
    priorities = sorted({p for cells in review.compliance.values() for p in cells})
    rows = [
        [clock.replace("_", " "), *(_held(review.compliance[clock].get(p)) for p in priorities)]
        for clock in CLOCKS
        if clock in review.compliance
    ]
    return _table(["clock", *priorities], rows)


def _recurring_rows(items: Sequence[Recurring]) -> list[list[str]]:
    return [
        [r.summary, str(r.tickets), str(r.occurrences), ", ".join(r.kinds), ", ".join(r.known_issues) or "–"]
        for r in items
    ]


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{escape(title)}</h2>\n{body}\n</section>\n'


def render(review: Review, replay: str | None = None) -> str:
    """The review as a whole HTML document."""
    s = review.satisfaction
    breaches = len(review.breaches)
    handovers = sum(m.handover for m in review.moves)
    kpis = [
        ("tickets opened", str(review.tickets)),
        ("SLA breaches", str(breaches)),
        ("ownership moves", f"{len(review.moves)} ({handovers} handover)"),
        ("reports answered by known issues", f"{review.reports_answered}/{review.reports}"),
        ("satisfaction index", f"{_pct(s.index)} of {s.answers}"),
    ]
    summary = (
        '<div class="kpis">'
        + "".join(f'<div class="kpi"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in kpis)
        + "</div>"
        + "".join(f'<p class="note">{escape(n)}</p>' for n in review.notes)
    )
    weeks = [[_day(w.start), str(w.opened), _mins(w.mtta_min), _mins(w.mttr_min)] for w in review.weeks]
    sections = [
        _section("summary", "At a glance", summary),
        _section(
            "compliance",
            "SLA compliance per clock and priority",
            _compliance(review) + '<p class="note">held: tickets of the quarter without a breach of the clock</p>',
        ),
        _section(
            "trend",
            "MTTA and MTTR by week",
            line_chart(review.weeks, "median minutes to acknowledge and to resolve per week")
            + _table(["week of", "opened", "MTTA (median)", "MTTR (median)"], weeks, (1,)),
        ),
        _section(
            "volume",
            "Volume by category and by phase",
            bar_chart(sorted(review.by_category.items()), "tickets by category")
            + bar_chart(sorted(review.by_phase.items()), "tickets by phase (hypercare or operations)"),
        ),
        _section(
            "recurring",
            "Top recurring problems",
            _table(
                ["problem", "tickets", "occurrences", "kind", "known issue"], _recurring_rows(review.recurring), (1, 2)
            ),
        ),
        _section(
            "breaches",
            "Breaches and their reasons",
            _table(
                ["ticket", "clock", "priority", "team", "at", "reason"],
                [
                    [b.ticket_id, b.clock.replace("_", " "), b.priority, b.team, _when(b.at), b.reason]
                    for b in review.breaches
                ],
            ),
        ),
        _section(
            "moves",
            "Ownership moves (reassignments; the hypercare handovers among them)",
            _table(
                ["ticket", "at", "by", "what"],
                [[m.ticket_id, _when(m.at), m.actor, m.reason] for m in review.moves],
            ),
        ),
        _section(
            "known-issues",
            "Known issues: hits and misses",
            f"<p>{review.reports_answered} of {review.reports} customer reports matched a known issue of the "
            f"handover package; {review.reports - review.reports_answered} did not.</p>"
            + _table(
                ["known issue", "reports", "said it solved it", "said it did not"],
                [
                    [k, str(n), *(str(x) for x in review.known_issue_said.get(k, (0, 0)))]
                    for k, n in sorted(review.known_issue_hits.items())
                ],
                (1, 2, 3),
            ),
        ),
        _section(
            "satisfaction",
            "Customer satisfaction",
            f"<p>Index {escape(_pct(s.index))} ({s.satisfied} of {s.answers} answers were 4 or 5).</p>"
            + _table(
                ["team", "answers", "index"],
                [[t, str(f.answers), _pct(f.index)] for t, f in review.satisfaction_by_team.items()],
                (1, 2),
            )
            + _table(
                ["ticket", "score", "comment"],
                [[a.ticket_id, f"{a.score}/5", a.comment] for a in review.comments],
                (1,),
            ),
        ),
        _section(
            "sop",
            "SOP candidates: recurring problems no known issue covers",
            _table(
                ["problem", "tickets", "occurrences", "kind", "known issue"],
                _recurring_rows(review.sop_candidates),
                (1, 2),
            ),
        ),
    ]
    if replay is not None:
        sections.append(
            _section("replay", "What the proposed sla.yaml would have done", f"<pre>{escape(replay)}</pre>")
        )
    title = f"ticketloop quarterly review {review.quarter}"
    head = (
        f'<h1>{escape(title)}</h1>\n<p class="note">{escape(review.scope)} · tickets opened '
        f"{_day(review.start)} to {_day(review.end)} (UTC, end excluded)</p>\n"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + head
        + "".join(sections)
        + "</main>\n</body>\n</html>\n"
    )
