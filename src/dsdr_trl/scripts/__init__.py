"""Entry points of the `dsdr-trl` subcommands: `train` and `eval` (each a `main(argv) -> int`)."""
