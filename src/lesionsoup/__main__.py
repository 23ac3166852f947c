import sys

from lesionsoup.cli import main

sys.exit(main())
