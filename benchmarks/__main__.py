"""``python -m edgedet.benchmarks``: the same as ``edgedet bench``."""

from .command import main

raise SystemExit(main())
