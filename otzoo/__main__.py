"""`python -m otzoo ...` (also what `torchrun -m otzoo` launches)."""

from otzoo.cli import main

if __name__ == "__main__":
    main()
