"""``python -m eventconv.bench``: see :mod:`eventconv.bench.cli`."""

import sys

from eventconv.bench.cli import main

sys.exit(main())
