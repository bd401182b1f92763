"""`python -m embtune ...` runs the CLI (also what torchrun launches)."""

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. pytest --doctest-modules) does not run the CLI
    raise SystemExit(main())
