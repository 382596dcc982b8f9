"""Moved into the package `pipeline.report` (issue 10): ``view`` (the sums and the rows both
renderings show), ``markdown`` and ``html``. Only `sums` is still here, for tests/test_load.py;
delete this module once that test imports ``from pipeline.report.view import sums``."""

from pipeline.report.view import sums

__all__ = ["sums"]
