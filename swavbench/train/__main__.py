"""`python -m swavbench.train -c CONFIG [-o K=V ...]`: the same as `swavbench train ...`."""

import sys

from swavbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
