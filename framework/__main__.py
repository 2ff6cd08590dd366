"""`python -m framework` is the same as the `framework` command."""

from framework.cli.main import main

raise SystemExit(main())
