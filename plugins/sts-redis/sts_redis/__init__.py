"""The ``redis`` backend of STS: a durable store and a leased broker on one Redis server."""
