import sys

from condorspawner.cli import main

sys.exit(main())
