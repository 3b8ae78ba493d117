"""The in-memory backend for STS: a Store and a Broker living in the scheduler's process."""
