"""`python -m rosetta` is the `rosetta` command."""

from rosetta.cli import main

raise SystemExit(main())
