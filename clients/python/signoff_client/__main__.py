"""`python -m signoff_client mcp`: the same as the `signoff-client` command."""

import sys

from signoff_client.cli import main

sys.exit(main())
