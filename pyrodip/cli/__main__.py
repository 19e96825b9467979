"""``python -m pyrodip.cli``: the ``pyrodip`` command."""

import sys

from . import main

sys.exit(main())
