"""`python -m fastcore`: the command line (fastcore.cli.main). Without an app argument it serves
the built-in demo app (fastcore.demo)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
