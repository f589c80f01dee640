import sys

from .sw.tools.cli import main

sys.exit(main())
