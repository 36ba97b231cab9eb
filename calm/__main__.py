"""`python -m calm` runs the `calm` command."""

import sys

from calm.cli import main

# The guard matters: Dask's worker processes (calm sweep) start by spawn, which imports the
# parent's __main__ module again in each new process.
if __name__ == "__main__":
    sys.exit(main())
