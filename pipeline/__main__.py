"""python -m pipeline == aigw-feedback."""

from pipeline.cli import main

main()
