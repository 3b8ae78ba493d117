"""Which events alert, what the messages say, throttling, and per-task options.

The plugin is fed events by hand (as the kernel's event thread would) and posts through its
real sender to a fake Slack that checks every payload against Slack's limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs
import pytest
from sts_slack_helpers import HOST, T0, all_text, headers, make_run, make_task

import sts_slack.alerter
from sts.plugin import RunState
from sts.plugin import events as ev


def failed(task: str = "etl", at: float = 4, **fields: Any) -> ev.RunFailed:
    run = make_run(task, RunState.FAILED, **{"id": f"{task}-{at}", **fields})
    return ev.RunFailed(T0 + timedelta(seconds=at), run, make_task(task))


def succeeded(task: str = "etl", at: float = 100) -> ev.RunSucceeded:
    run = make_run(task, RunState.SUCCEEDED, id=f"{task}-ok-{at}", ended_at=T0 + timedelta(seconds=at))
    return ev.RunSucceeded(T0 + timedelta(seconds=at), run, make_task(task))


# --- the failure alert ---------------------------------------------------------------------------------


def test_a_failure_alert_names_task_attempt_error_traceback_tail_times_host_and_links_the_run(make_plugin, slack):
    harness = make_plugin(dashboard_url="https://sts.example.com/runs/{run_id}?task={task}")
    trace = "Traceback (most recent call last):\n" + "".join(f"  frame {i}\n" for i in range(100)) + "KeyError: 'id'\n"
    event = failed(attempt=3, traceback=trace, error_type="KeyError", error_message="'id'", id="r-1", task_name="etl")
    harness.emit(ev.TaskAdded(T0, make_task("etl", retries=2)), event)
    harness.stop()

    [payload] = slack.payloads
    text = all_text(payload)
    assert payload["blocks"][0] == {
        "type": "header", "text": {"type": "plain_text", "text": ":red_circle: etl failed", "emoji": True},
    }
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n", 1)[1] for f in payload["blocks"][1]["fields"]}
    assert fields["Task"] == "etl (v1)"
    assert fields["Attempt"] == "3 of 3"
    assert fields["State"] == "failed"
    assert fields["Error type"] == "KeyError"
    assert fields["Scheduled"] == "2026-01-01T00:00:00Z"
    assert fields["Started"] == "2026-01-01T00:00:02.500Z (2.5s late)"
    assert fields["Ended"] == "2026-01-01T00:00:04Z (took 1.5s)"
    assert fields["Host"] == HOST
    assert fields["Run"] == "r-1"
    assert "*Error*\nKeyError: 'id'" in text
    assert "*Traceback* (last 20 lines)\n```\n  frame 81\n" in text
    assert "frame 80\n" not in text and text.count("```") == 2  # only the tail, fence closed
    [button] = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"]
    assert button["url"] == "https://sts.example.com/runs/r-1?task=etl"
    assert payload["text"].startswith("STS: task etl failed (attempt 3 of 3) - KeyError: 'id' - scheduled "
                                      "2026-01-01T00:00:00Z, host test-host, run r-1")
    assert payload["text"].endswith(" <https://sts.example.com/runs/r-1?task=etl|open>")


def test_the_fallback_text_alone_says_what_failed_where(make_plugin, slack):
    harness = make_plugin()
    harness.emit(failed(error_type="OSError", error_message="disk <full> & more"))
    harness.stop()
    assert slack.payloads[0]["text"] == (
        "STS: task etl failed (attempt 1 of 3) - OSError: disk &lt;full&gt; &amp; more - "
        "scheduled 2026-01-01T00:00:00Z, host test-host, run etl-4"
    )


def test_timed_out_and_poison_runs_are_failures_too_and_poison_uses_what_is_known_of_the_task(make_plugin, slack):
    harness = make_plugin(dashboard_url="https://sts.example.com/tasks/{task}")
    harness.emit(ev.TaskAdded(T0, make_task("quiet", alerts={"slack": False})))
    timed_out = make_run("etl", RunState.TIMED_OUT, id="t-1", error_type="TimeoutError",
                         error_message="did not finish within its timeout of 30s")
    poison = make_run("report", RunState.POISON, id="p-1", error_type="Poison", error_message="delivered 6 times",
                      started_at=None)
    quiet_poison = make_run("quiet", RunState.POISON, id="p-2", error_type="Poison", started_at=None)
    harness.emit(ev.RunFailed(T0, timed_out, make_task()), ev.RunFailed(T0, poison, None),
                 ev.RunFailed(T0, quiet_poison, None))
    harness.stop()
    assert headers(slack.payloads) == [":red_circle: etl timed out", ":red_circle: report was dead-lettered (poison)"]
    assert "*Started*\n-" in all_text(slack.payloads[1])
    assert slack.payloads[1]["blocks"][-2]["elements"][0]["url"] == "https://sts.example.com/tasks/report"


def test_a_task_name_is_url_quoted_in_the_dashboard_link(make_plugin, slack):
    harness = make_plugin(dashboard_url="https://sts.example.com/{task}/runs/{run_id}")
    harness.emit(failed("ns:etl.daily", id="a/b c"))
    harness.stop()
    [button] = slack.payloads[0]["blocks"][-2]["elements"]
    assert button["url"] == "https://sts.example.com/ns%3Aetl.daily/runs/a%2Fb%20c"


# --- the optional kinds ----------------------------------------------------------------------------------


def _retrying(error_type: str = "ValueError", task: Any = None) -> ev.RunRetrying:
    # STS records the timeouts it imposes as TimeoutError without a traceback (Run.hit_timeout).
    extra = {"traceback": None} if error_type == "TimeoutError" else {}
    run = make_run(state=RunState.RETRYING, id=f"retry-{error_type}", attempt=1, error_type=error_type,
                   retry_at=T0 + timedelta(seconds=30), **extra)
    return ev.RunRetrying(T0 + timedelta(seconds=4), run, task or make_task(retries=2))


OPTIONAL = {
    "retry": (_retrying, ":warning: etl failed attempt 1; retrying"),
    "timeout": (lambda: _retrying("TimeoutError"), ":hourglass: etl attempt 1 timed out; retrying"),
    "skipped": (lambda: ev.RunSkipped(T0, make_run("load", RunState.SKIPPED, reason="upstream failed: etl",
                                                   started_at=None), make_task("load")),
                ":fast_forward: load skipped: upstream failed"),
    "missed": (lambda: ev.FireMissed(T0 + timedelta(minutes=5), "etl", T0, 3, "coalesce"),
               ":alarm_clock: etl missed 3 fires"),
    "lost": (lambda: ev.RunLost(T0, make_run(state=RunState.LOST, error_type="WorkerLost"), None),
             ":ghost: etl attempt 1 lost its worker; delivered again"),
}


@pytest.mark.parametrize("kind", sorted(OPTIONAL))
def test_an_optional_kind_is_off_by_default(make_plugin, slack, kind):
    harness = make_plugin()
    harness.emit(OPTIONAL[kind][0]())
    harness.stop()
    assert slack.payloads == []


@pytest.mark.parametrize("kind", sorted(OPTIONAL))
def test_an_optional_kind_alerts_when_switched_on(make_plugin, slack, kind):
    harness = make_plugin(alert_on={kind: True})
    harness.emit(OPTIONAL[kind][0]())
    harness.stop()
    assert headers(slack.payloads) == [OPTIONAL[kind][1]]


def test_a_timeout_error_the_task_raised_itself_is_a_retry_not_a_timeout(make_plugin, slack):
    harness = make_plugin(alert_on={"retry": True, "timeout": True})
    raised = _retrying("ValueError")
    raised.run.error_type = "TimeoutError"  # with its traceback: the task raised it
    harness.emit(raised)
    harness.stop()
    assert headers(slack.payloads) == [":warning: etl failed attempt 1; retrying"]


def test_failures_can_be_switched_off(make_plugin, slack):
    harness = make_plugin(alert_on={"failure": False})
    harness.emit(failed())
    harness.stop()
    assert slack.payloads == []


def test_a_retry_alert_says_when_the_next_attempt_is(make_plugin, slack):
    harness = make_plugin(alert_on={"retry": True})
    harness.emit(_retrying())
    harness.stop()
    assert "*Attempt*\n1 of 3, next at 2026-01-01T00:00:30Z" in all_text(slack.payloads[0])


def test_a_run_skipped_for_another_reason_never_alerts(make_plugin, slack):
    harness = make_plugin(alert_on={"skipped": True})
    harness.emit(ev.RunSkipped(T0, make_run(state=RunState.SKIPPED, reason="max instances (1) running"),
                               make_task()))
    harness.stop()
    assert slack.payloads == []


def test_a_missed_fire_alert_says_how_many_since_when_and_how_late(make_plugin, slack):
    harness = make_plugin(alert_on={"missed": True})
    harness.emit(OPTIONAL["missed"][0]())
    harness.stop()
    text = all_text(slack.payloads[0])
    assert "*First missed*\n2026-01-01T00:00:00Z" in text
    assert "*Noticed*\n2026-01-01T00:05:00Z (5m00s late)" in text
    assert "*Misfire policy*\ncoalesce" in text


# --- recovery ----------------------------------------------------------------------------------------------


def test_the_first_success_after_an_alerted_failure_says_recovered_once(make_plugin, slack):
    harness = make_plugin()
    harness.emit(failed(at=4), failed(at=64, id="etl-64"), succeeded(at=120), succeeded(at=180))
    harness.stop()
    assert headers(slack.payloads) == [
        ":red_circle: etl failed",
        ":large_green_circle: etl recovered",
        ":no_bell: etl: 1 failure alert suppressed",  # the second failure, in the throttle window
    ]
    text = all_text(slack.payloads[1])
    assert "*Failing since*\n2026-01-01T00:00:04Z" in text and "*Failures*\n2 failed runs" in text
    assert slack.payloads[1]["text"].startswith(
        "STS: task etl recovered: succeeded at 2026-01-01T00:02:00Z after 2 failed runs since 2026-01-01T00:00:04Z")


def test_a_recovery_is_not_throttled_and_not_sent_for_a_failure_slack_never_heard_of(make_plugin, slack):
    harness = make_plugin(throttle="10m")
    harness.emit(failed(at=0), succeeded(at=60), failed(at=120), succeeded(at=180))
    harness.stop()
    assert headers(slack.payloads) == [
        ":red_circle: etl failed",
        ":large_green_circle: etl recovered",
        ":no_bell: etl: 1 failure alert suppressed",
    ]
    assert "The task has succeeded since, at 2026-01-01T00:03:00Z." in all_text(slack.payloads[2])


def test_recovery_messages_can_be_switched_off(make_plugin, slack):
    harness = make_plugin(alert_on={"recovered": False})
    harness.emit(failed(), succeeded())
    harness.stop()
    assert headers(slack.payloads) == [":red_circle: etl failed"]


# --- throttling ----------------------------------------------------------------------------------------------


def test_one_alert_per_task_and_kind_per_window_then_one_summary_when_the_window_ends(make_plugin, slack):
    harness = make_plugin(throttle="10m")
    minute = 60.0
    harness.emit(*(failed(at=m * minute, error_message=f"row {m}") for m in range(4)))  # 00:00 sent, 3 held back
    harness.emit(failed("other", at=5 * minute))  # another task has its own window
    harness.emit(ev.RunStarted(T0 + timedelta(minutes=10), make_run("other", RunState.RUNNING), None))
    harness.emit(failed(at=11 * minute, error_message="row 11"))  # a new window
    harness.stop()
    assert headers(slack.payloads) == [
        ":red_circle: etl failed",
        ":red_circle: other failed",
        ":no_bell: etl: 3 failure alerts suppressed",
        ":red_circle: etl failed",
    ]
    summary = slack.payloads[2]
    assert summary["blocks"][1]["text"]["text"] == (
        "3 more failure alerts for etl were not sent from 2026-01-01T00:00:00Z to 2026-01-01T00:10:00Z "
        "(throttle: at most one per 10m00s).\nLast one at 2026-01-01T00:03:00Z: ValueError: row 3")
    assert "row 11" in all_text(slack.payloads[3])


def test_a_due_summary_goes_out_just_before_the_next_alert_of_its_key(make_plugin, slack):
    harness = make_plugin(throttle="10m")
    harness.emit(failed(at=0), failed(at=60))
    harness.alerter.throttle.due = lambda now: []  # as if no event or timer had seen the window end
    harness.emit(failed(at=700))
    harness.stop()
    assert headers(slack.payloads) == [
        ":red_circle: etl failed", ":no_bell: etl: 1 failure alert suppressed", ":red_circle: etl failed",
    ]


def test_the_sender_thread_sends_a_due_summary_by_the_scheduler_clock_without_any_event(make_plugin, slack):
    harness = make_plugin(throttle="1m", summary_check_every=0.02)
    harness.emit(failed(at=0), failed(at=10))
    slack.wait_for(1)
    harness.scheduler.clock.jump(61)  # the scheduler's clock passes the window's end
    payloads = slack.wait_for(2)
    assert headers(payloads) == [":red_circle: etl failed", ":no_bell: etl: 1 failure alert suppressed"]
    assert "to 2026-01-01T00:01:00Z (throttle" in all_text(payloads[1])


def test_pending_summaries_are_sent_at_shutdown(make_plugin, slack):
    harness = make_plugin(throttle="1h")
    harness.emit(failed(at=0), failed(at=10), failed(at=20))
    harness.scheduler.clock.jump(30)
    harness.stop()
    assert headers(slack.payloads) == [":red_circle: etl failed", ":no_bell: etl: 2 failure alerts suppressed"]
    assert "from 2026-01-01T00:00:00Z to 2026-01-01T00:00:30Z (shutdown)" in all_text(slack.payloads[1])


def test_retries_do_not_hide_the_final_failure(make_plugin, slack):
    harness = make_plugin(alert_on={"retry": True})
    harness.emit(_retrying(), failed(at=40))
    harness.stop()
    assert headers(slack.payloads) == [":warning: etl failed attempt 1; retrying", ":red_circle: etl failed"]


def test_throttle_zero_sends_every_alert(make_plugin, slack):
    harness = make_plugin(throttle=0)
    harness.emit(*(failed(at=s) for s in range(5)))
    harness.stop()
    assert len(slack.payloads) == 5


def test_an_event_emitted_twice_for_the_same_run_alerts_once(make_plugin, slack):
    harness = make_plugin(throttle=0)
    harness.emit(failed(at=4), failed(at=4))
    harness.stop()
    assert len(slack.payloads) == 1


def test_an_outcome_announced_again_after_a_lost_worker_still_alerts_once(make_plugin, slack):
    harness = make_plugin(throttle=0)
    harness.emit(attrs.evolve(failed(at=4), repeated=True))  # this process never saw the first announcement
    harness.emit(failed(at=8), attrs.evolve(failed(at=8), repeated=True))  # it saw both
    harness.stop()
    assert [p["text"].split(" - ")[0] for p in slack.payloads] == ["STS: task etl failed (attempt 1 of 3)"] * 2


def test_the_run_ids_kept_to_drop_repeated_events_are_bounded(make_plugin, slack, monkeypatch):
    monkeypatch.setattr(sts_slack.alerter, "SEEN_LIMIT", 5)
    harness = make_plugin(throttle="1h")
    harness.emit(*(failed(at=s) for s in range(20)))
    assert list(harness.alerter._seen) == [(f"etl-{s}", "failure") for s in range(15, 20)]
    harness.stop()


# --- per-task options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [False, {"enabled": False}])
def test_a_task_can_opt_out(make_plugin, slack, value):
    harness = make_plugin()
    task = make_task("quiet", alerts={"slack": value})
    harness.emit(ev.RunFailed(T0, make_run("quiet"), task), failed("loud"))
    harness.stop()
    assert headers(slack.payloads) == [":red_circle: loud failed"]


def test_a_task_can_route_its_alerts_and_their_summaries_to_a_named_webhook(make_plugin, slack):
    harness = make_plugin(webhooks={"data-team": slack.url("data-team")})
    routed = make_task("etl", alerts={"slack": {"webhook": "data-team"}})
    harness.emit(ev.RunFailed(T0, make_run("etl", id="a"), routed), ev.RunFailed(T0, make_run("etl", id="b"), routed))
    harness.emit(failed("other"))
    harness.stop()
    assert headers(slack.payloads_to("data-team")) == [":red_circle: etl failed", ":no_bell: etl: 1 failure alert "
                                                                                  "suppressed"]
    assert headers(slack.payloads_to("default")) == [":red_circle: other failed"]


def test_a_task_can_switch_kinds_on_for_itself_only(make_plugin, slack):
    harness = make_plugin()
    chatty = make_task("etl", alerts={"slack": {"alert_on": {"retry": True}}})
    harness.emit(_retrying(task=chatty))
    harness.emit(ev.RunRetrying(T0, make_run("other", RunState.RETRYING, error_type="E"), make_task("other")))
    harness.stop()
    assert headers(slack.payloads) == [":warning: etl failed attempt 1; retrying"]


def test_a_removed_webhook_falls_back_to_the_default_with_a_warning(make_plugin, slack, caplog):
    harness = make_plugin()
    harness.emit(ev.RunFailed(T0, make_run(), make_task(alerts={"slack": {"webhook": "gone"}})))
    harness.stop()
    assert len(slack.payloads_to("default")) == 1
    assert "webhook 'gone' is not configured any more" in caplog.text


def test_a_newer_task_version_replaces_the_options_an_older_event_would_bring(make_plugin, slack):
    harness = make_plugin()
    harness.emit(ev.TaskAdded(T0, make_task(alerts={"slack": False}).with_version(2)))
    harness.emit(ev.RunFailed(T0, make_run(), make_task()))  # an event about version 1
    harness.stop()
    assert slack.payloads == []


# --- events that may be the first this process hears of a task ------------------------------------------


def missed(task: Any) -> ev.FireMissed:
    return ev.FireMissed(T0 + timedelta(minutes=5), task.name, T0, 3, "coalesce", task)


def test_a_missed_fire_of_a_task_never_seen_before_follows_the_tasks_own_options(make_plugin, slack):
    harness = make_plugin(alert_on={"missed": True}, webhooks={"data-team": slack.url("data-team")})
    harness.emit(missed(make_task("quiet", alerts={"slack": False})),
                 missed(make_task("routed", alerts={"slack": {"webhook": "data-team"}})))
    harness.stop()
    assert headers(slack.payloads_to("data-team")) == [":alarm_clock: routed missed 3 fires"]
    assert slack.payloads_to("default") == []


def test_a_task_may_switch_missed_fire_alerts_on_for_itself_before_this_process_saw_it(make_plugin, slack):
    harness = make_plugin()  # missed: false in the section
    harness.emit(missed(make_task("watched", alerts={"slack": {"alert_on": {"missed": True}}})),
                 missed(make_task("other")))
    harness.stop()
    assert headers(slack.payloads) == [":alarm_clock: watched missed 3 fires"]


@pytest.mark.parametrize("state", [RunState.LOST, RunState.POISON])
def test_lost_and_poison_events_follow_the_definition_they_carry(make_plugin, slack, state):
    harness = make_plugin(alert_on={"lost": True}, webhooks={"data-team": slack.url("data-team")})
    make = ev.RunLost if state is RunState.LOST else ev.RunFailed
    quiet = make_run("quiet", state, id="q", error_type="WorkerLost", started_at=None)
    routed = make_run("routed", state, id="r", error_type="WorkerLost", started_at=None)
    harness.emit(make(T0, quiet, make_task("quiet", alerts={"slack": False})),
                 make(T0, routed, make_task("routed", alerts={"slack": {"webhook": "data-team"}})))
    harness.stop()
    assert len(slack.payloads_to("data-team")) == 1 and slack.payloads_to("default") == []
    assert "routed" in slack.payloads_to("data-team")[0]["text"]


# --- memory: removed tasks leave nothing behind ------------------------------------------------------------


def test_a_removed_task_leaves_no_state_behind(make_plugin, slack):
    harness = make_plugin(throttle="1m", alert_on={"retry": True}, webhooks={"data-team": slack.url("data-team")})
    for index in range(20):
        task = make_task(f"gone-{index}", alerts={"slack": {"webhook": "data-team"}})
        run = make_run(task.name, RunState.FAILED, id=f"run-{index}")
        harness.emit(ev.TaskAdded(T0, task), ev.RunFailed(T0, run, task),
                     ev.RunSucceeded(T0, attrs.evolve(run, id=f"ok-{index}", state=RunState.SUCCEEDED), task),
                     ev.TaskRemoved(T0, task.name))
    harness.emit(ev.RunStarted(T0 + timedelta(minutes=2), make_run("kept", RunState.RUNNING), None))  # windows end
    alerter = harness.alerter
    holders = {**vars(alerter), **{f"recovery.{k}": v for k, v in vars(alerter.recovery).items()},
               "throttle._windows": alerter.throttle._windows}
    for name, value in holders.items():
        if isinstance(value, Mapping) and name != "_seen":  # _seen is bounded by SEEN_LIMIT, not per task
            assert not [key for key in value if "gone-" in repr(key)], name
    harness.stop()
    assert len(slack.payloads_to("data-team")) == 40  # a failure and a recovery each


def test_the_summary_of_a_removed_task_still_goes_to_its_webhook(make_plugin, slack):
    harness = make_plugin(webhooks={"data-team": slack.url("data-team")})
    routed = make_task("etl", alerts={"slack": {"webhook": "data-team"}})
    harness.emit(ev.RunFailed(T0, make_run(id="a"), routed), ev.RunFailed(T0, make_run(id="b"), routed),
                 ev.TaskRemoved(T0, "etl"))
    harness.stop()
    assert headers(slack.payloads_to("data-team")) == [":red_circle: etl failed",
                                                       ":no_bell: etl: 1 failure alert suppressed"]
    assert slack.payloads_to("default") == []
