"""``python -m mainspring.cli``, as the ``mainspring`` script."""

import sys

from mainspring.cli import main

sys.exit(main())
