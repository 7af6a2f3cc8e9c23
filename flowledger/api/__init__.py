"""The HTTP API: the seed docs' endpoints over the same library the CLI uses."""
