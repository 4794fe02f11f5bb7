"""``python -m client``: the command-line client."""

import sys

from client.cli import main

sys.exit(main())
