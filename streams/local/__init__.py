"""Development tooling, never on the production path: a local Kafka broker, the demo, sample traffic."""
