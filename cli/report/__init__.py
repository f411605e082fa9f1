"""Aggregation, comparison tables and plots of experiment results (reads files, never sockets).

    results.py   load a results directory (its files and readers: daemons/rundir)
    recovery.py  each fault's detection, drain and recovery -> recovery.csv
    summary.py   one run's figures -> summary.csv
    dispersion.py  how evenly load spreads over the nodes (CV, Jain, max/mean)
    affected.py  the requests a fault reached
    host.py      the host's CPU figures and the saturation verdict
    run_report.py  write_report: recovery.csv, summary.csv and the plots of one run
    compare.py   the winners table of several runs -> comparison.csv / comparison.md
    text.py      aligned text and Markdown rendering
    plots.py     matplotlib PNGs (imported lazily: matplotlib is slow to import)
    commands.py  `experiment report` / `experiment compare` and the prototype report
"""

from cli.report.commands import compare_command, print_prototype_report, report_command
from cli.report.compare import Comparison, compare, prototype_comparison, render_text, write_comparison
from cli.report.results import RunData, load_run
from cli.report.run_report import RunReport, write_report
from cli.report.summary import Summary, summarize, summarize_run, write_summary_csv
from daemons.rundir import Slo

__all__ = [
    "Comparison",
    "RunData",
    "RunReport",
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
    "write_report",
    "write_summary_csv",
]
