"""An outage is logged once when it starts and once when it ends, however many tries fail between."""
import logging

from control.live.outage import Outage


def events(caplog) -> list[tuple[str, str | None]]:
    return [(r.getMessage(), getattr(r, "reason", None)) for r in caplog.records]


def test_a_run_of_failures_is_one_line_and_its_end_another(caplog):
    outage = Outage("store_unreachable", "store_restored")
    with caplog.at_level(logging.INFO, logger="meshvpn"):
        outage.ok(reason="refresh")  # nothing was down: nothing to say
        for attempt in range(5):
            outage.failed(OSError(f"try {attempt}"))
        outage.ok(reason="refresh")
        outage.failed(OSError("again"))
    assert events(caplog) == [("store_unreachable", "try 0"), ("store_restored", "refresh"),
                              ("store_unreachable", "again")]


def test_without_a_restored_event_only_the_start_is_logged(caplog):
    outage = Outage("sweep_failed")
    with caplog.at_level(logging.INFO, logger="meshvpn"):
        outage.failed(OSError("one"))
        outage.ok()
        outage.failed(OSError("two"))
    assert events(caplog) == [("sweep_failed", "one"), ("sweep_failed", "two")]
