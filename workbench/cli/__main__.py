"""`python -m workbench.cli ...`: the `workbench` command."""

from . import main

main()
