"""RabbitMQ broker for STS."""
