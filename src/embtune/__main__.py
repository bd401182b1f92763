"""`python -m embtune ...` runs the CLI (also what torchrun launches)."""

from .cli import main

raise SystemExit(main())
