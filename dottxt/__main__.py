"""`python -m dottxt`: the same command line as the `dottxt` console script."""

from .cli import main

raise SystemExit(main())
