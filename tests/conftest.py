"""Hypothesis profiles for the property-based tests.

`ci` (the default) keeps every property test to a few seconds on a loaded 2-core machine
and writes no example database into the tree; `soak` runs many more examples, for a
fuzzing session: `SCHEDCTL_HYPOTHESIS_PROFILE=soak pytest tests/bus tests/gossip -k property`.
"""

from __future__ import annotations

import os

# Tests reach only loopback: huggingface_hub must not call the Hub (it reads this at import).
os.environ["HF_HUB_OFFLINE"] = "1"

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a venv without the dev extra still runs every other test
    pass
else:
    settings.register_profile(
        "ci", max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "soak", max_examples=5000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("SCHEDCTL_HYPOTHESIS_PROFILE", "ci"))
