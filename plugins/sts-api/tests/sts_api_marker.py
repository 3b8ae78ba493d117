"""A module the allowlist tests check is never imported for a refused function (``sts_api_marker:*``)."""


def allowed_job() -> None:
    """Do nothing."""


def other() -> None:
    """Do nothing."""
