"""`python -m bench.scaleout`: run the scale-out benchmark."""

import sys

from bench.scaleout.run import main

sys.exit(main())
