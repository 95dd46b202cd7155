"""The HTTP API: reads what the sinks wrote (never live worker state) and answers queries over it."""
