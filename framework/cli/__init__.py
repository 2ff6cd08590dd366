"""The `framework` command line."""

__all__: list[str] = []  # the CLI's surface is its commands (`framework --help`), not names
