import sys

from arena.top.cli import main

sys.exit(main())
