"""The command line and its commands: the only code that reads a configuration."""
