"""`python -m smpsim`: the command line (smpsim/cli.py)."""

import sys

from smpsim.cli import main

if __name__ == "__main__":
    sys.exit(main())
