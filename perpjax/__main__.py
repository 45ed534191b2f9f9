"""``python -m perpjax ...`` = the ``perpjax`` command."""

import sys

from .cli import main

sys.exit(main())
