"""How many examples a hypothesis property tries: fewer in the fast suite, all of them in CI.

`make test` (the fast suite) tries `fast`; `make test-all` (what CI runs) sets FULL_EXAMPLES=1 and
tries `full`. The property and its strategies are the same either way; only the count differs.
"""

from __future__ import annotations

import os


def examples(full: int, fast: int) -> int:
    """`full` under FULL_EXAMPLES=1 (`make test-all`), else `fast`."""
    return full if os.environ.get("FULL_EXAMPLES") else fast
