"""CLI commands, one module each (see khe_bayes.cli.COMMANDS)."""
