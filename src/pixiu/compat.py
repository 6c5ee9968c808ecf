"""Differences between the library versions pyproject.toml allows, each behind its version check.

CI runs the fast tests twice: on the newest releases (`make test`) and on the lowest each range allows
(`make test-floor`), so a rename upstream shows up here instead of as an AttributeError deep in a stage.
"""

from __future__ import annotations

import transformers
from packaging.version import Version

TRANSFORMERS = Version(transformers.__version__)

# transformers 5.24 renamed the key/value cache: forward(past_key_values=...) -> forward(cache=...), and the
# output field `past_key_values` -> `cache`.
CACHE = "cache" if TRANSFORMERS >= Version("5.24.0.dev0") else "past_key_values"


def output_cache(out):
    """The key/value cache a forward with use_cache=True returned (`out.cache` from 5.24, before it
    `out.past_key_values`)."""
    return getattr(out, CACHE)
