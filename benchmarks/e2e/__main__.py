"""`python -m benchmarks.e2e`: see the package docstring."""

from benchmarks.e2e.cli import main

main()
