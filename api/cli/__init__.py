"""The `vtr` command line."""
