"""Stand-ins for providers that tests (and other processes) run on 127.0.0.1."""
