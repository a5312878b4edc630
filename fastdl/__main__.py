"""``python -m fastdl``: the same as the ``fastdl`` console script."""

from fastdl.cli import main

raise SystemExit(main())
