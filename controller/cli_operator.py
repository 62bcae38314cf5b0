"""`python -m controller.cli_operator`: the operator without an installed console script."""

from controller.cli import operator_main

raise SystemExit(operator_main())
