"""`python -m smpsim`: the command line (smpsim/experiment/cli.py)."""

import sys

from smpsim.experiment.cli import main

if __name__ == "__main__":
    sys.exit(main())
