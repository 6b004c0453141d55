import sys

from flower_core.cli import main

sys.exit(main())
