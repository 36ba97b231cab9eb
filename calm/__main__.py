"""`python -m calm` runs the `calm` command."""

import sys

from calm.cli import main

sys.exit(main())
