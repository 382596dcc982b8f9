"""The names `import pipeline` promises are there, documented, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pipeline


def test_every_public_name_resolves_and_has_a_docstring() -> None:
    """Each name in pipeline.__all__ imports and says what it is."""
    for name in pipeline.__all__:
        value = getattr(pipeline, name)
        assert value.__doc__, name


def test_importing_the_package_does_not_import_polars() -> None:
    """`import pipeline` (and so `aigw-feedback --help`) does not pay for polars or pyarrow."""
    code = "import sys, pipeline; print('polars' in sys.modules or 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
