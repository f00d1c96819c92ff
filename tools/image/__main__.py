import sys

from tools.image.build import main

sys.exit(main())
