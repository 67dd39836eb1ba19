"""The timeline page: rows from events, escaped, self-contained; filtered in real Chromium."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from demo.page import render, rows
from demo.steps import Outcome, Result, Step
from demo.timeline import Log, timeline

GENERATED = datetime(2026, 11, 30, 20, 1, tzinfo=UTC)
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def fixture_events() -> list[dict]:
    """A small demo: deploy, then node3 crashes and two peers drop it; a traceback; a hostile name."""
    started = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)
    crash = Result(Step("crash", "node3 crashes", "removed everywhere"), Outcome(True, "removed after 5.6 s"),
                   datetime(2026, 11, 30, 20, 0, 10, tzinfo=UTC), 7.5)
    deploy = Result(Step("deploy", "site.yml", "every node enrolled"), Outcome(True, "site.yml: ok"), started, 9.0)
    logs = [
        Log("control", "meshvpn-control", "\n".join([
            '{"ts": "2026-11-30T20:00:02Z", "host": "control", "event": "node_registered", "node": "a1", '
            f'"node_name": "{HOSTILE.replace(chr(34), chr(92) + chr(34))}", "mesh_ip": "100.64.0.1"}}',
            '{"ts": "2026-11-30T20:00:16.2Z", "host": "control", "event": "node_offline", "node": "c3"}'])),
        Log("node1", "meshagent", "\n".join([
            '{"ts": "2026-11-30T20:00:03Z", "host": "node1", "event": "peer_added", "peer": "node2"}',
            '{"ts": "2026-11-30T20:00:16.5Z", "host": "node1", "event": "peer_removed", "peer": "node3"}',
            "Traceback (most recent call last):", "RuntimeError: <b>not bold</b>"])),
        Log("node2", "meshagent",
            '{"ts": "2026-11-30T20:00:16.6Z", "host": "node2", "event": "peer_removed", "peer": "node3"}'),
    ]
    return timeline(logs, deploy.markers + crash.markers, started)


def test_rows_show_time_since_the_start_and_the_fields_as_text():
    table = rows(fixture_events())
    assert [row.event for row in table][:3] == ["demo_step", "node_registered", "peer_added"]
    registered = table[1]
    assert registered.clock == "20:00:02.000" and registered.since_start == "+2.000"
    assert ("node_name", HOSTILE) in registered.fields and ("mesh_ip", "100.64.0.1") in registered.fields
    end = next(row for row in table if row.phase == "end" and row.step == "crash")
    assert end.outcome == "passed" and end.since_start == "+17.500" and ("duration", "7.5") in end.fields
    raw = [row for row in table if row.event == "raw"]
    assert [row.host for row in raw] == ["node1", "node1"]


def test_the_page_escapes_every_value_and_loads_nothing():
    html = render(fixture_events(), "demo <timeline>", GENERATED)
    assert HOSTILE not in html and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html and "<title>demo &lt;timeline&gt;</title>" in html
    assert "default-src 'none'" in html  # the CSP forbids every load
    assert not re.search(r'\b(src|href)="(?!#)', html)  # no resource, no link out but in-page anchors
    assert html.count("<script>") == 1  # the page's own


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.chat.test_chat_mesh import launch
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def visible(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "rows => rows.filter(r => !r.hidden).map(r => r.innerText)")


def test_filters_by_host_event_and_text_in_chromium(browser, tmp_path):
    from playwright.sync_api import expect
    path = tmp_path / "timeline.html"
    path.write_text(render(fixture_events(), "demo", GENERATED))
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    expect(page.locator("#count")).to_have_text("7 of 7 events")
    assert len(visible(page, "tr.step")) == 4  # two steps, each a begin and an end marker

    page.select_option("#host", "node1")
    expect(page.locator("#count")).to_have_text("4 of 7 events")
    assert [row.split("\t")[2] for row in visible(page, "tr.event")] == ["node1"] * 4

    page.select_option("#event", "peer_removed")
    expect(page.locator("#count")).to_have_text("1 of 7 events")
    assert "peer=node3" in visible(page, "tr.event")[0]

    page.select_option("#host", "")
    expect(page.locator("#count")).to_have_text("2 of 7 events")
    assert sorted(row.split("\t")[2] for row in visible(page, "tr.event")) == ["node1", "node2"]

    page.select_option("#event", "")
    page.fill("#text", "NODE_OFFLINE")  # free text, any case
    expect(page.locator("#count")).to_have_text("1 of 7 events")
    assert "control" in visible(page, "tr.event")[0]

    page.fill("#text", "")
    page.uncheck("#steps")
    assert visible(page, "tr.step") == [] and len(visible(page, "tr.event")) == 7

    # The hostile name is shown as text and ran nothing; the page asked for nothing but itself.
    expect(page.locator("td.fields").filter(has_text="window.pwned = 1")).to_contain_text("<script>")
    assert page.evaluate("window.pwned") is None
    assert requests == [path.as_uri()]
    page.close()
