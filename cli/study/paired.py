"""`schedctl experiment compare` over several runs of the same arms: the study's statistics.

Runs are grouped into arms by scheduler type and paired by their schedule's seed (the
manifest's `seed`; runs of one arm with the same seed are paired in the order given).
Each metric of the comparison table gets every arm's mean and 95% t-interval and, per
pair of arms, the paired difference with its interval and decision (cli/study/stats.py):
a winner only when the interval excludes zero. Only when some arm has two or more runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cli.report.compare import METRICS
from cli.report.summary import Summary
from cli.report.text import render_text_table
from cli.study.metrics import shown_interval
from cli.study.stats import compare_paired, mean_ci

Key = tuple[int, int]  # (seed, occurrence of that seed in the arm)


def _series(summaries: Sequence[Summary], seeds: Sequence[int | None]) -> dict[str, list[tuple[Key, Summary]]]:
    arms: dict[str, list[tuple[Key, Summary]]] = {}
    seen: dict[tuple[str, int], int] = {}
    for index, (summary, seed) in enumerate(zip(summaries, seeds, strict=True)):
        s = seed if seed is not None else -1 - index  # unknown seed: pairs with nothing
        arm = summary.scheduler_type
        k = seen[(arm, s)] = seen.get((arm, s), -1) + 1
        arms.setdefault(arm, []).append(((s, k), summary))
    return arms


def paired_comparison(summaries: Sequence[Summary], seeds: Sequence[int | None]) -> str | None:
    """The text table, or None when no arm has two runs (the plain comparison says it all)."""
    arms = _series(summaries, seeds)
    if len(arms) < 2 or max(len(runs) for runs in arms.values()) < 2:
        return None
    names = sorted(arms)
    rows = []
    for m in METRICS:
        values = {a: {key: float(getattr(s, m.key)) for key, s in arms[a]} for a in names}
        cells = [shown_interval(mean_ci(list(values[a].values())), m.scale) for a in names]
        decisions = []
        for a, b in itertools.combinations(names, 2):
            diff = compare_paired(a, values[a], b, values[b])
            decisions.append(f"{a} − {b}: {shown_interval(diff.diff, m.scale)} → {diff.decision(m.better)}")
        rows.append([m.label, *cells, "; ".join(decisions)])
    counts = ", ".join(f"{a} {len(arms[a])}" for a in names)
    title = f"PAIRED BY SEED ({counts} runs): mean [95% CI, Student t]; winner only when the CI excludes 0"
    return render_text_table(title, ["Metric", *names, "Paired difference → decision"], rows)

