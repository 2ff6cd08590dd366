"""The `framework` command line."""
