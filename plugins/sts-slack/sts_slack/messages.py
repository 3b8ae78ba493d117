"""The text of each alert: Block Kit blocks plus a plain fallback ``text`` (what notifications
and clients without blocks show). Pure functions of the event data; limits are kept by
``sts_slack.blockkit``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import attrs

from sts.plugin import FireMissed, Run, Task, format_duration
from sts_slack import blockkit as bk
from sts_slack.recovery import Episode
from sts_slack.throttle import Summary

_EMOJI = {
    "failure": ":red_circle:",
    "retry": ":warning:",
    "timeout": ":hourglass:",
    "skipped": ":fast_forward:",
    "missed": ":alarm_clock:",
    "lost": ":ghost:",
    "recovered": ":large_green_circle:",
    "summary": ":no_bell:",
}
_NOUN = {
    "failure": "failure",
    "retry": "retry",
    "timeout": "timeout",
    "skipped": "skipped-run",
    "missed": "missed-fire",
    "lost": "lost-worker",
}


@attrs.frozen
class Style:
    """What every message shares: where it comes from and how it links and looks."""

    host: str
    dashboard_url: str | None = None
    traceback_lines: int = 20
    username: str | None = None
    icon: str | None = None
    #: ``retries`` from the config, for "attempt 2 of 4" when a task does not set its own.
    default_retries: int | None = None

    def extras(self) -> dict[str, Any]:
        """The optional payload keys: username and icon."""
        icon = self.icon or None
        return {
            "username": self.username or None,
            "icon_emoji": icon if icon and icon.startswith(":") else None,
            "icon_url": icon if icon and not icon.startswith(":") else None,
        }


def iso(moment: datetime | None) -> str:
    """``2026-01-01T09:30:00Z`` (UTC); naive times are taken as UTC; None gives ``-``."""
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def dashboard_link(template: str | None, task: str, run_id: str | None) -> str | None:
    """The dashboard URL for a task or run, each value URL-quoted; None when the template
    needs a run id and there is none."""
    if not template:
        return None
    if "{run_id}" in template and run_id is None:
        return None
    return template.format(task=quote(task, safe=""), run_id=quote(run_id or "", safe=""))


def lateness(run: Run) -> float | None:
    """Seconds between when the attempt was due and when it started (retries: due at their
    ``retry_at``; first attempts at ``scheduled_for``)."""
    if run.started_at is None:
        return None
    due = run.created_at if run.reason == "retry" and run.created_at is not None else run.scheduled_for
    return (run.started_at - due).total_seconds()


# --- run alerts ------------------------------------------------------------------------------------


def run_alert(kind: str, run: Run, task: Task | None, time: datetime, style: Style) -> dict[str, Any]:
    """The message for a run event: failure, retry, timeout, skipped or lost."""
    title = _run_title(kind, run)
    blocks: list[dict[str, Any] | None] = [bk.header(f"{_EMOJI[kind]} {run.task_name} {title}")]
    blocks.append(bk.fields(_run_fields(kind, run, task, style)))
    if run.error_type or run.error_message:
        error = f"{run.error_type or 'Error'}: {run.error_message or ''}".rstrip(": ")
        blocks.append(bk.section(bk.labelled("Error", error, bk.MAX_SECTION_TEXT)))
    if kind == "skipped":
        blocks.append(bk.section(bk.labelled("Reason", run.reason, bk.MAX_SECTION_TEXT)))
    blocks.append(_tail_section("Traceback", run.traceback, style.traceback_lines))
    blocks.append(_tail_section("Output", run.output, style.traceback_lines))
    link = dashboard_link(style.dashboard_url, run.task_name, run.id)
    blocks.append(bk.link_button("Open run", link) if link else None)
    blocks.append(bk.context([_footer(kind, time, style)]))
    return bk.message(_fallback(_run_fallback(kind, run, title, task, style), link), blocks, **style.extras())


def _run_title(kind: str, run: Run) -> str:
    state = run.state.value
    if kind == "failure":
        return {"timed_out": "timed out", "poison": "was dead-lettered (poison)"}.get(state, "failed")
    if kind == "retry":
        return f"failed attempt {run.attempt}; retrying"
    if kind == "timeout":
        return f"attempt {run.attempt} timed out; retrying"
    if kind == "skipped":
        return "skipped: upstream failed"
    if kind == "lost":
        return f"attempt {run.attempt} lost its worker; delivered again"
    return state


def _attempts(run: Run, task: Task | None, style: Style) -> str:
    retries = task.retries if task is not None and task.retries is not None else style.default_retries
    return f"{run.attempt} of {retries + 1}" if retries is not None else str(run.attempt)


def _run_fields(kind: str, run: Run, task: Task | None, style: Style) -> list[tuple[str, str]]:
    late = lateness(run)
    started = iso(run.started_at) + (f" ({_signed(late)} late)" if late is not None and late >= 0.001 else "")
    ended = iso(run.ended_at) + (f" (took {format_duration(run.duration)})" if run.duration is not None else "")
    attempt = _attempts(run, task, style)
    if kind in ("retry", "timeout") and run.retry_at is not None:
        attempt += f", next at {iso(run.retry_at)}"
    return [
        ("Task", run.task_name + (f" (v{run.task_version})" if run.task_version else "")),
        ("Attempt", attempt),
        ("State", run.state.value),
        ("Error type", run.error_type or "-"),
        ("Scheduled", iso(run.scheduled_for)),
        ("Started", started),
        ("Ended", ended),
        ("Host", style.host),
        ("Worker", run.worker or "-"),
        ("Run", run.id),
    ]


def _signed(seconds: float) -> str:
    return format_duration(seconds) if seconds >= 0 else "-" + format_duration(-seconds)


def _tail_section(label: str, text: str | None, lines: int) -> dict[str, Any] | None:
    if not text or not text.strip() or lines <= 0:
        return None
    kept = text.rstrip("\n").splitlines()[-lines:]
    head = f"*{label}* (last {len(kept)} line{'s' if len(kept) != 1 else ''})\n"
    return bk.section(head + bk.code_block("\n".join(kept), bk.MAX_SECTION_TEXT - bk.slack_length(head)))


def _run_fallback(kind: str, run: Run, title: str, task: Task | None, style: Style) -> str:
    parts = [f"STS: task {run.task_name} {title} (attempt {_attempts(run, task, style)})"]
    if run.error_type or run.error_message:
        parts.append(f"{run.error_type or 'Error'}: {run.error_message or ''}".rstrip(": "))
    if kind == "skipped":
        parts.append(run.reason)
    parts.append(f"scheduled {iso(run.scheduled_for)}, host {style.host}, run {run.id}")
    return " - ".join(parts)


# --- missed fires, recoveries, summaries ---------------------------------------------------------------


def missed_alert(event: FireMissed, style: Style) -> dict[str, Any]:
    """The message for ``FireMissed``."""
    late = (event.time - event.first_missed).total_seconds()
    count = event.missed_count
    title = f"missed {count} fire{'s' if count != 1 else ''}"
    blocks: list[dict[str, Any] | None] = [
        bk.header(f"{_EMOJI['missed']} {event.task_name} {title}"),
        bk.fields([
            ("Task", event.task_name),
            ("Missed fires", str(count)),
            ("First missed", iso(event.first_missed)),
            ("Misfire policy", event.policy),
            ("Noticed", f"{iso(event.time)} ({_signed(late)} late)"),
            ("Host", style.host),
        ]),
    ]
    link = dashboard_link(style.dashboard_url, event.task_name, None)
    blocks.append(bk.link_button("Open task", link) if link else None)
    blocks.append(bk.context([_footer("missed", event.time, style)]))
    text = (f"STS: task {event.task_name} {title} (first at {iso(event.first_missed)}, noticed {_signed(late)} "
            f"later; policy {event.policy}) - host {style.host}")
    return bk.message(_fallback(text, link), blocks, **style.extras())


def recovered_alert(run: Run, episode: Episode, style: Style) -> dict[str, Any]:
    """The message for the first success after an announced failure episode."""
    failures = f"{episode.failures} failed run{'s' if episode.failures != 1 else ''}"
    blocks: list[dict[str, Any] | None] = [
        bk.header(f"{_EMOJI['recovered']} {run.task_name} recovered"),
        bk.fields([
            ("Task", run.task_name),
            ("Succeeded", iso(run.ended_at)),
            ("Failing since", iso(episode.since)),
            ("Failures", failures),
            ("Attempt", str(run.attempt)),
            ("Last error", episode.last_error or "-"),
            ("Host", style.host),
            ("Run", run.id),
        ]),
    ]
    link = dashboard_link(style.dashboard_url, run.task_name, run.id)
    blocks.append(bk.link_button("Open run", link) if link else None)
    blocks.append(bk.context([_footer("recovered", run.ended_at, style)]))
    text = (f"STS: task {run.task_name} recovered: succeeded at {iso(run.ended_at)} after {failures} "
            f"since {iso(episode.since)} - host {style.host}, run {run.id}")
    return bk.message(_fallback(text, link), blocks, **style.extras())


def summary_alert(
    task: str, kind: str, summary: Summary, window: float, style: Style, succeeded_since: datetime | None = None
) -> dict[str, Any]:
    """The message counting alerts the throttle held back for one task and kind."""
    noun = f"{_NOUN.get(kind, kind)} alert{'s' if summary.suppressed != 1 else ''}"
    until = f"{iso(summary.end)} (shutdown)" if summary.early else iso(summary.end)
    lines = [
        f"{summary.suppressed} more {noun} for {task} were not sent from {iso(summary.start)} to {until} "
        f"(throttle: at most one per {format_duration(window)}).",
        f"Last one at {iso(summary.last_time)}" + (f": {summary.last_detail}" if summary.last_detail else "."),
    ]
    if succeeded_since is not None and succeeded_since > summary.last_time:
        lines.append(f"The task has succeeded since, at {iso(succeeded_since)}.")
    body = "\n".join(lines)
    blocks: list[dict[str, Any] | None] = [
        bk.header(f"{_EMOJI['summary']} {task}: {summary.suppressed} {noun} suppressed"),
        bk.section(bk.mrkdwn(body, bk.MAX_SECTION_TEXT)),
    ]
    link = dashboard_link(style.dashboard_url, task, None)
    blocks.append(bk.link_button("Open task", link) if link else None)
    blocks.append(bk.context([_footer("summary", summary.end, style)]))
    return bk.message(_fallback("STS: " + body.replace("\n", " "), link), blocks, **style.extras())


# --- shared -----------------------------------------------------------------------------------------


def _footer(kind: str, time: datetime | None, style: Style) -> str:
    return bk.escape(f"STS {kind} alert · {iso(time)} · from {style.host}")


def _fallback(text: str, link: str | None) -> str:
    """The plain ``text`` of the payload: escaped, bounded, with the link (whole) at the end."""
    suffix = f" <{bk.escape(link)}|open>" if link and len(link) <= bk.MAX_URL // 2 else ""
    return bk.mrkdwn(text, bk.MAX_FALLBACK - bk.slack_length(suffix)) + suffix
