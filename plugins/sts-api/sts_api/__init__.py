"""The STS REST API plugin: tasks, runs and plugins over HTTP, served in the scheduler's event loop."""
