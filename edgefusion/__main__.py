import sys

from edgefusion.cli import main

sys.exit(main())
