"""Entry points of the `dsdr-trl` subcommands: `train`, `eval` and `demo` (each a `main(argv) -> int`)."""
