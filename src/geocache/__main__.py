"""`python -m geocache` is the `geocache` command."""

from geocache.cli.main import main

raise SystemExit(main())
