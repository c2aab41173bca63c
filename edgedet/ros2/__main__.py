"""``python -m edgedet.ros2 MODEL ...``: the same as ``edgedet ros2 MODEL ...``."""

import sys

from .command import main

sys.exit(main())
