"""Known-issue matching measured on a labelled set: keywords alone against the matcher by meaning.

    python -m bench.known_issue_match [--reports tests/data/known_issue_reports.jsonl]
                                      [--projects deploy/local/config/projects.yaml] [--project webshop]

Each line of the set is a customer report (``text``, ``labels``) and the known issue of the demo's handover
package it should be answered with (``expected``), or null when none fits (tests/data/README.md says how it was
made). Both matchers see the report's text and labels and the project's known issues:

- keywords: services/router/knowledge.py without an index: the label gate, then the issues one of whose
  keywords is in the text (or that match by labels alone), in projects.yaml's order: what the router did before;
- matcher: the same with the index (jieba + BM25 and WordLlama, shared/rules/similarity.py): after the rules,
  every other gated issue by similarity; the report is answered by the first when it matched by a rule or its
  similarity is at least the threshold (``ANSWER_THRESHOLD``).

Figures (over the set):

- hit1: of the reports that have an expected issue, the share *answered* with it (the workaround that would
  have gone out was the right one);
- hit3: of the same reports, the share whose expected issue is among the first three the matcher ranks (rules
  first, then by similarity, any similarity above 0; no threshold): what an engineer shown the top three
  would find it in. For keywords, the first three keyword matches;
- false: the reports, of all of them, that were answered with an issue other than the expected one: an answer
  where the expected answer is null, or a wrong issue at rank 1. A report left unanswered is never false;
- answered: the reports answered at all;
- cv_hit1, cv_false: the same as hit1 and false with the threshold chosen by 5-fold cross-validation (on four
  fifths of the set, the threshold with the most hits and no more false answers than keywords there, applied
  to the fifth left out): an estimate of what a threshold not tuned on the very reports it is judged on gives;
- best_threshold: the threshold with the most hits and no more false answers than keywords on the whole set;
- load_ms: loading the models (jieba's dictionary, WordLlama's weights from the wheel); index_ms: indexing the
  project's known issues (once per load of projects.yaml); per_report_ms: ranking one report, on average.

Last line: ``known_issue_match: reports=... keywords_hit1=... keywords_hit3=... keywords_false=...
matcher_hit1=... matcher_hit3=... matcher_false=... matcher_answered=... threshold=... best_threshold=...
cv_hit1=... cv_false=... load_ms=... index_ms=... per_report_ms=...``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.router.knowledge import (
    ANSWER_THRESHOLD,
    KnownIssueIndex,
    Suggestion,
    answer,
    build_known_issue_index,
    rank_known_issues,
)
from services.router.projects import Project, ProjectsConfig
from shared.infra.config import load_yaml_model
from shared.rules.similarity import load_text_models

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "tests" / "data" / "known_issue_reports.jsonl"
PROJECTS = ROOT / "deploy" / "local" / "config" / "projects.yaml"
GRID = tuple(round(0.1 + i * 0.01, 2) for i in range(71))  # 0.10 .. 0.80
FOLDS = 5


@dataclass(frozen=True)
class Report:
    text: str
    lang: str
    labels: dict[str, str]
    expected: str | None


@dataclass(frozen=True)
class Ranked:
    """One report and what a matcher ranked for it."""

    report: Report
    ranked: tuple[Suggestion, ...]


@dataclass(frozen=True)
class Score:
    hit1: float
    hit3: float
    false: int
    answered: int


def read_reports(path: Path) -> list[Report]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(Report(d["text"], d["lang"], {str(k): str(v) for k, v in d["labels"].items()}, d["expected"]))
    return out


def rank_all(reports: Sequence[Report], project: Project, index: KnownIssueIndex | None) -> list[Ranked]:
    return [
        Ranked(r, tuple(rank_known_issues(project.known_issues, r.labels, r.text, index, project.name)))
        for r in reports
    ]


def score(ranked: Sequence[Ranked], threshold: float) -> Score:
    """The figures of the module doc for one matcher's rankings at one threshold."""
    hits1 = hits3 = false = answered = 0
    expecting = [r for r in ranked if r.report.expected is not None]
    for r in ranked:
        given = answer(r.ranked, threshold)
        answered += given is not None
        if given is not None and given.issue.id != r.report.expected:
            false += 1
        if r.report.expected is not None:
            hits1 += given is not None and given.issue.id == r.report.expected
            hits3 += r.report.expected in [s.issue.id for s in r.ranked[:3]]
    n = len(expecting) or 1
    return Score(hits1 / n, hits3 / n, false, answered)


def best_threshold(ranked: Sequence[Ranked], most_false: int) -> float:
    """The threshold of GRID with the most hits and at most ``most_false`` false answers (the highest if none)."""
    best: tuple[float, float] | None = None
    for t in GRID:
        s = score(ranked, t)
        if s.false <= most_false and (best is None or s.hit1 > best[0]):
            best = (s.hit1, t)
    return best[1] if best is not None else GRID[-1]


def cross_validated(matcher: Sequence[Ranked], keywords: Sequence[Ranked], folds: int = FOLDS) -> Score:
    """hit1 and false with each fold's threshold chosen on the other folds (see the module doc)."""
    given: list[Ranked] = []
    hits = false = answered = 0
    for f in range(folds):
        train = [r for i, r in enumerate(matcher) if i % folds != f]
        limit = score([r for i, r in enumerate(keywords) if i % folds != f], 1.0).false
        held_out = [r for i, r in enumerate(matcher) if i % folds == f]
        s = score(held_out, best_threshold(train, limit))
        expecting = sum(r.report.expected is not None for r in held_out)
        hits += round(s.hit1 * expecting)
        false += s.false
        answered += s.answered
        given.extend(held_out)
    n = sum(r.report.expected is not None for r in given) or 1
    return Score(hits / n, 0.0, false, answered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=REPORTS)
    parser.add_argument("--projects", type=Path, default=PROJECTS)
    parser.add_argument("--project", default="webshop")
    args = parser.parse_args()

    reports = read_reports(args.reports)
    config = load_yaml_model(args.projects, ProjectsConfig)
    project = next(p for p in config.projects if p.name == args.project)

    started = time.perf_counter()
    models = load_text_models()
    load_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    index = build_known_issue_index(config, models)
    index_ms = (time.perf_counter() - started) * 1000

    keywords = rank_all(reports, project, None)
    started = time.perf_counter()
    matcher = rank_all(reports, project, index)
    per_report_ms = (time.perf_counter() - started) * 1000 / max(1, len(reports))

    kw = score(keywords, ANSWER_THRESHOLD)
    m = score(matcher, ANSWER_THRESHOLD)
    cv = cross_validated(matcher, keywords)
    print(
        f"known_issue_match: reports={len(reports)} keywords_hit1={kw.hit1:.3f} keywords_hit3={kw.hit3:.3f} "
        f"keywords_false={kw.false} matcher_hit1={m.hit1:.3f} matcher_hit3={m.hit3:.3f} matcher_false={m.false} "
        f"matcher_answered={m.answered} threshold={ANSWER_THRESHOLD} "
        f"best_threshold={best_threshold(matcher, kw.false)} cv_hit1={cv.hit1:.3f} cv_false={cv.false} "
        f"load_ms={load_ms:.0f} index_ms={index_ms:.1f} per_report_ms={per_report_ms:.2f}"
    )


if __name__ == "__main__":
    main()
