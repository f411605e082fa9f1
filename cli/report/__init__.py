"""Aggregation, comparison tables and plots of experiment results (reads files, never sockets).

    results.py   read a results directory (requests, nodes, events, manifest)
    summary.py   one run's figures -> summary.csv
    compare.py   the winners table of several runs -> comparison.csv / comparison.md
    text.py      aligned text and Markdown rendering
    plots.py     matplotlib PNGs (imported lazily: matplotlib is slow to import)
    commands.py  `experiment report` / `experiment compare` and the prototype report
"""

from cli.report.commands import compare_command, print_prototype_report, report_command
from cli.report.compare import Comparison, compare, prototype_comparison, render_text, write_comparison
from cli.report.results import RunData, Slo, load_run
from cli.report.summary import Summary, summarize, summarize_run, write_summary_csv

__all__ = [
    "Comparison",
    "RunData",
    "Slo",
    "Summary",
    "compare",
    "compare_command",
    "load_run",
    "print_prototype_report",
    "prototype_comparison",
    "render_text",
    "report_command",
    "summarize",
    "summarize_run",
    "write_comparison",
    "write_summary_csv",
]
