"""`python -m dottxt`: the same command line as the `dottxt` console script."""

from ._cli import main

raise SystemExit(main())
