"""sts-slack: Slack alerts for STS.

Posts to Slack incoming webhooks when runs fail for good, and optionally on retries,
timeouts, skipped dependents, missed fires, lost workers and recoveries. The hook
implementations live in ``sts_slack.plugin``; see the distribution's README for the
``slack`` config section and the per-task ``alerts: {slack: ...}`` option.
"""
