"""One module per `python -m training` command: `register(subparsers)` adds its parser and sets
`run` (args -> exit code) as the parser's default. Add new commands to `COMMANDS` in cli.py."""
