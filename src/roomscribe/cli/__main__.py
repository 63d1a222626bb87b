"""`python -m roomscribe.cli`: the same as the `roomscribe` command."""

import sys

from . import main

sys.exit(main())
