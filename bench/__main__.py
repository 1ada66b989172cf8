"""`python -m bench`: run the benchmark suite (see bench/README.md and `python -m bench --help`)."""
import sys

from bench.run import main

sys.exit(main())
