"""`python -m caracal_viz`: see caracal_viz.cli."""

from .cli import main

raise SystemExit(main())
