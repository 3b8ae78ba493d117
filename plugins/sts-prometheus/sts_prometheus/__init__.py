"""The ``prometheus`` plugin of STS: each scheduler process serves its metrics at ``/metrics``."""
