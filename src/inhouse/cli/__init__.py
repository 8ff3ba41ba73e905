"""The `inhouse` command line."""
