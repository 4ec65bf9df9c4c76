import sys

from gradproof._cli import main

sys.exit(main())
