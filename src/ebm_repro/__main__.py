"""`python -m ebm_repro <verb>` (see cli.py)."""
from ebm_repro.cli import main

main()
