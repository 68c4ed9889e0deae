import sys

from omnisep.cli import main

sys.exit(main())
