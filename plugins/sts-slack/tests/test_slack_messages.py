"""Block Kit limits and escaping: whatever a run carries, Slack accepts the message."""

from __future__ import annotations

import pytest
from sts_slack_helpers import T0, make_run, make_task

from sts.plugin import FireMissed, RunState
from sts_slack import blockkit as bk
from sts_slack.messages import Style, iso, missed_alert, run_alert, summary_alert
from sts_slack.testing import check_payload
from sts_slack.throttle import Summary

STYLE = Style(host="web-1", dashboard_url="https://sts.example.com/runs/{run_id}", traceback_lines=50)


def sections(payload: dict) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section" and "text" in b]


def test_huge_errors_tracebacks_and_outputs_are_cut_to_slacks_limits_and_stay_escaped():
    nasty = "<&>" * 5000 + "```" + "é😀" * 3000
    trace = "\n".join(f"line {i} <tag> & ```" for i in range(10000))
    run = make_run(error_type="E" * 300, error_message=nasty, traceback=trace, output=nasty, task_name="t" * 200)
    payload = run_alert("failure", run, make_task("t" * 200), T0, STYLE)
    assert check_payload(payload) == []
    assert len(payload["blocks"][0]["text"]["text"]) <= bk.MAX_HEADER
    for text in sections(payload):
        assert bk.slack_length(text) <= bk.MAX_SECTION_TEXT
    traceback = next(t for t in sections(payload) if t.startswith("*Traceback*"))
    assert traceback.endswith("line 9999 &lt;tag&gt; &amp; `\u200b`\u200b`\n```")  # the tail, fence closed
    assert traceback.count("```") == 2
    assert bk.slack_length(payload["text"]) <= bk.MAX_FALLBACK


@pytest.mark.parametrize("limit", range(1, 40))
def test_cutting_escaped_text_never_splits_an_entity(limit):
    for raw in ("a&b<c>d" * 5, "&&&&&&&&&&", "<<<<>>>>", "x😀&y" * 4):
        for tail in (False, True):
            text = bk.mrkdwn(raw, max(limit, 2), tail=tail)
            assert bk.slack_length(text) <= max(limit, 2)
            assert check_payload({"text": text or "x", "blocks": [{"type": "divider"}]}) == []


def test_lengths_are_counted_as_slack_counts_them():
    assert bk.slack_length("😀") == 2
    cut = bk.fit("😀" * 100, 151)
    assert bk.slack_length(cut) <= 151 and cut.endswith("…")


def test_a_run_with_nothing_to_say_still_makes_a_valid_message():
    run = make_run(state=RunState.POISON, error_type=None, error_message=None, traceback=None, started_at=None,
                   ended_at=None, duration=None, worker=None)
    payload = run_alert("failure", run, None, T0, Style(host="h"))
    assert check_payload(payload) == []


def test_the_summary_and_missed_messages_are_valid():
    summary = Summary(("etl", "failure"), 12, T0, T0, T0, "ValueError: <bad> & worse")
    payload = summary_alert("etl", "failure", summary, 600, STYLE)
    assert check_payload(payload) == []
    assert "ValueError: &lt;bad&gt; &amp; worse" in payload["text"]
    payload = missed_alert(FireMissed(T0, "etl", T0, 1, "skip"), STYLE)
    assert check_payload(payload) == []
    assert [b for b in payload["blocks"] if b["type"] == "actions"] == []  # the template needs a run id


def test_username_and_icon_are_passed_when_configured():
    payload = run_alert("failure", make_run(), None, T0, Style(host="h", username="STS", icon=":rotating_light:"))
    assert payload["username"] == "STS" and payload["icon_emoji"] == ":rotating_light:"
    payload = run_alert("failure", make_run(), None, T0, Style(host="h", icon="https://example.com/sts.png"))
    assert payload["icon_url"] == "https://example.com/sts.png" and "username" not in payload


def test_times_are_utc_iso_with_a_z():
    from datetime import datetime, timedelta, timezone

    berlin = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 1, 1, 10, 0, tzinfo=berlin)) == "2026-01-01T09:00:00Z"
    assert iso(datetime(2026, 1, 1, 10, 0, 0, 250000)) == "2026-01-01T10:00:00.250Z"
    assert iso(None) == "-"


def test_the_contract_checker_catches_what_slack_refuses():
    assert check_payload({"text": "", "blocks": []}) == [
        "text: expected a non-empty fallback text", "blocks: expected a list of 1 to 50 blocks"]
    bad = {"text": "a < b", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}},
                                       {"type": "image"}, {"type": "actions", "elements": [{"type": "button",
                                        "text": {"type": "plain_text", "text": "go"}, "url": "ftp://x"}]}]}
    found = check_payload(bad)
    assert any("unescaped < or >" in p for p in found)
    assert any("151 characters, more than 150" in p for p in found)
    assert any("blocks[1]" in p for p in found) and any("url" in p for p in found)


def example_failure() -> dict:
    """The failure alert shown in the README (examples/failure-payload.json)."""
    from datetime import timedelta

    run = make_run(
        "load_warehouse", id="7f3a9c12-2b", attempt=3, error_type="ConnectionError",
        error_message="could not reach warehouse.internal:5432 (timed out after 10s)",
        traceback=("Traceback (most recent call last):\n"
                   '  File "/srv/jobs/warehouse.py", line 41, in load\n'
                   "    conn = connect(DSN, timeout=10)\n"
                   '  File "/srv/jobs/db.py", line 12, in connect\n'
                   "    raise ConnectionError(f\"could not reach {host} (timed out after {timeout}s)\")\n"
                   "ConnectionError: could not reach warehouse.internal:5432 (timed out after 10s)\n"),
        output="rows staged: 120000\nconnecting to warehouse.internal:5432 ...\n",
        scheduled_for=T0 + timedelta(hours=2), created_at=T0 + timedelta(hours=2, minutes=1),
        reason="retry", started_at=T0 + timedelta(hours=2, minutes=1, seconds=0.4),
        ended_at=T0 + timedelta(hours=2, minutes=1, seconds=10.6), duration=10.2, worker="worker-2:5e1f0a7c",
    )
    style = Style(host="worker-2", dashboard_url="https://sts.example.com/runs/{run_id}", username="STS",
                  icon=":rotating_light:")
    return run_alert("failure", run, make_task("load_warehouse", retries=2), run.ended_at, style)


def test_the_readme_example_payload_is_what_the_plugin_sends():
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "failure-payload.json"
    payload = example_failure()
    assert check_payload(payload) == []
    assert json.loads(example.read_text()) == payload
