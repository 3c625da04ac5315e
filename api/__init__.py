"""vtr front doors: the `vtr` command line for people and the HTTP API for programs."""
