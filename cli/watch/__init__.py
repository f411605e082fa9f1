"""`schedctl watch`: a live terminal dashboard of a local run in progress or a deployed cluster.

journal.py (the runner writes what it sees, the watch reads it), model.py (pure: folds
observations into a snapshot), sources.py (the I/O: status questions, events, the journal),
app.py (Textual renders the snapshot), command.py (the Typer command).
"""
