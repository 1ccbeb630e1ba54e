"""The `tdr` command line, above every layer: it may import each stage, and nothing imports it."""
