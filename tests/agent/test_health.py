"""Tunnel health (pure): which peers have no working tunnel, and when a heartbeat says so."""
from agent.core.health import PROBE_AFTER, REFRESH, Down, Report, Seen, Tracker, down, quiet, track
from agent.core.model import PeerStats
from meshcommon.contract.timings import HANDSHAKE_FRESH, HEALTH_BOUND

NOW = 10_000.0
IDS = {"ka": "a", "kb": "b"}


def peer(key: str, handshake: float = 0, rx: int = 0) -> PeerStats:
    return PeerStats(key, None, int(handshake), rx, 0)


def test_the_receive_counter_s_growth_is_dated_by_the_sample_that_saw_it():
    seen = track({}, [peer("ka", rx=5)], NOW)
    assert seen == {"ka": Seen(NOW, 5)}
    seen = track(seen, [peer("ka", rx=5)], NOW + 10)
    assert seen["ka"].rx_at is None
    seen = track(seen, [peer("ka", rx=9)], NOW + 20)
    assert seen["ka"] == Seen(NOW, 9, NOW + 20)
    assert track(seen, [], NOW + 30) == {}  # a peer no longer configured is forgotten


def test_a_new_peer_gets_the_bound_before_its_silence_counts():
    seen = {"ka": Seen(NOW - HEALTH_BOUND + 1, 0)}
    assert down(seen, [peer("ka")], IDS, NOW) == []
    assert down(seen, [peer("ka")], IDS, NOW + 1) == [Down("a", "no_handshake", NOW - HEALTH_BOUND + 1)]


def test_a_live_session_that_receives_is_up_one_that_stopped_receiving_is_down():
    seen = {"ka": Seen(NOW - 500, 100, NOW - 10), "kb": Seen(NOW - 500, 100, NOW - HEALTH_BOUND)}
    stats = [peer("ka", NOW - 30, 100), peer("kb", NOW - 30, 100)]
    assert down(seen, stats, IDS, NOW) == [Down("b", "no_traffic", NOW - HEALTH_BOUND)]


def test_an_expired_session_is_down_whatever_was_received():
    seen = {"ka": Seen(NOW - 500, 100, NOW - 1)}
    assert down(seen, [peer("ka", NOW - HANDSHAKE_FRESH, 100)], IDS, NOW) == [Down("a", "stale_handshake", NOW - 1)]


def test_peers_not_in_the_netmap_are_not_reported():
    assert down({"kz": Seen(NOW - 500, 0)}, [peer("kz")], IDS, NOW) == []


def test_a_quiet_peer_is_probed_once_every_probe_interval():
    seen = {"ka": Seen(NOW - 100, 5, NOW - PROBE_AFTER), "kb": Seen(NOW - 100, 5, NOW - 1),
            "kc": Seen(NOW - PROBE_AFTER, 0)}
    assert quiet(seen, {}, NOW) == ["ka", "kc"]
    assert quiet(seen, {"ka": NOW - 1}, NOW) == ["kc"]


def test_a_report_goes_out_on_a_change_and_every_refresh_and_says_what_went_down_and_came_back():
    tracker = Tracker()
    assert tracker.update((peer("ka", rx=1),), IDS, NOW) == Report([], {}, set(), [])
    assert tracker.update((peer("ka", rx=1),), IDS, NOW + 1) == Report()
    assert tracker.update((peer("ka", rx=1),), IDS, NOW + PROBE_AFTER).probe == ["ka"]  # quiet: probed
    report = tracker.update((peer("ka", rx=1),), IDS, NOW + HEALTH_BOUND)
    assert report.body == [{"node_id": "a", "down_for": HEALTH_BOUND, "reason": "no_handshake"}]
    assert list(report.went_down) == ["a"]
    assert tracker.update((peer("ka", rx=1),), IDS, NOW + HEALTH_BOUND + 1).body is None
    again = tracker.update((peer("ka", rx=1),), IDS, NOW + HEALTH_BOUND + REFRESH)
    assert again.body == [{"node_id": "a", "down_for": HEALTH_BOUND + REFRESH, "reason": "no_handshake"}]
    assert again.went_down == {}  # not news: nothing to log
    healed = NOW + HEALTH_BOUND + REFRESH + 1
    assert tracker.update((peer("ka", healed - 5, 2),), IDS, healed) == Report([], {}, {"a"}, [])
