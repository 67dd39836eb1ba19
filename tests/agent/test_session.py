"""The session's policy against a fake control plane: no network, no waiting (pauses are recorded)."""
import asyncio
import logging

import msgspec
import pytest

from agent.client import Gone, Refused, TemporaryError
from agent.core import intake
from agent.core.model import Identity
from agent.core.pacing import ENROLLING_CAP, REFUSED_CAP, WATCH_CAP, heartbeat_timeout
from agent.core.settings import AgentSettings
from agent.session import Session
from agent.statedir import StateDir
from meshcommon.contract.wire import HeartbeatAnswer
from meshcommon.plumbing.backoff import Backoff
from tests.agent.data import ME, delta, entry, full, identity, registered

pytestmark = pytest.mark.anyio

JOIN = "mvj_join"
A, B = entry("a", "100.64.0.2"), entry("b", "100.64.0.3")


async def forever() -> None:
    await asyncio.Event().wait()


class FakeControl:
    """The ControlClient's methods, answering from scripts; a script used up blocks forever."""

    url = "http://control.test"

    def __init__(self, registrations=(), heartbeats=(), streams=()):
        self.registrations, self.heartbeats, self.streams = list(registrations), list(heartbeats), list(streams)
        self.calls: list[tuple] = []

    @staticmethod
    async def _answer(script: list):
        if not script:
            await forever()
        outcome = script.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def register(self, token, body, private_key):
        self.calls.append(("register", token, body))
        return await self._answer(self.registrations)

    async def heartbeat(self, node_id, token, body, timeout=None):
        self.calls.append(("heartbeat", node_id, token, body, timeout))
        return await self._answer(self.heartbeats)

    async def watch(self, token, since):
        self.calls.append(("watch", token, since))
        if not self.streams:
            await forever()
        for item in self.streams.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item

    async def leave(self, node_id, token):
        self.calls.append(("leave", node_id, token))

    def tokens(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] == "register"]


class Recorded(Session):
    """A session whose pauses are recorded and take no time."""

    delays: list[float]

    async def pause(self, seconds: float) -> None:
        self.__dict__.setdefault("delays", []).append(seconds)
        await asyncio.sleep(0)


async def report(netmap) -> dict:
    return {"applied_revision": None, "peers": []}


def session(tmp_path, control: FakeControl, enrolled: Identity | None = None, join: str | None = JOIN) -> Recorded:
    state = StateDir(tmp_path / "state")
    if enrolled is not None:
        state.save_identity(enrolled)
    token_file = None
    if join is not None:
        token_file = tmp_path / "join.token"
        token_file.write_text(join + "\n")
    settings = AgentSettings(("http://control.test",), token_file, "alpha", endpoint="192.0.2.1:51820")
    made = Recorded(control, settings, state, "PRIVATE", "PUBLIC", heartbeat_body=report,
                    find_endpoint=lambda url, port: None, jitter=lambda low, high: 1.0)
    made.delays = []
    return made


async def drive(made: Session, until, timeout: float = 5.0) -> None:
    """Run the session until `until()` holds, then stop it."""
    task = asyncio.create_task(made.run())
    try:
        async with asyncio.timeout(timeout):
            while not until():
                if task.done():
                    task.result()
                    raise AssertionError("the session ended before the condition held")
                await asyncio.sleep(0.001)
    finally:
        made.stop.set()
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def events(caplog, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


def test_backoff_doubles_from_half_a_second_up_to_the_cap_and_resets():
    retry = Backoff(lambda low, high: 1.0)
    assert [retry.next(3.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    retry.reset()
    assert retry.next(3.0) == 0.5
    jittered = Backoff()
    assert all(0.375 <= jittered.next(0.5) <= 0.625 for _ in range(50))


def test_backoff_survives_any_number_of_failures():
    retry = Backoff(lambda low, high: 1.0, attempt=5000)
    assert retry.next(2.0) == 2.0


async def test_enrols_with_the_join_token_then_registers_with_the_node_token(tmp_path, caplog):
    control = FakeControl(registrations=[registered()])
    first = session(tmp_path, control)
    await drive(first, lambda: first.identity is not None)
    assert control.tokens() == [JOIN]
    assert control.calls[0][2] == {"public_key": "PUBLIC", "name": "alpha", "listen_port": 51820,
                                   "endpoint": "192.0.2.1:51820"}
    assert first.state.identity() == first.identity and first.identity.control_urls == ["http://control.test"]
    assert len(events(caplog, "node_enrolled")) == 1 and first.control.connected

    again = FakeControl(registrations=[registered()])
    restarted = session(tmp_path, again)
    await drive(restarted, lambda: any(call[0] == "heartbeat" for call in again.calls))
    assert again.tokens() == ["mvn_node"] and len(events(caplog, "node_enrolled")) == 1


async def test_the_endpoint_is_found_toward_the_control_plane_when_none_is_set(tmp_path):
    control = FakeControl(registrations=[registered()])
    made = session(tmp_path, control)
    made.settings = AgentSettings(("http://control.test",), made.settings.join_token_file, "alpha")
    made.find_endpoint = lambda url, port: f"198.51.100.1:{port}" if url == control.url else None
    await drive(made, lambda: made.identity is not None)
    assert control.calls[0][2]["endpoint"] == "198.51.100.1:51820"


async def test_a_node_token_the_control_plane_no_longer_knows_is_forgotten_and_the_node_enrols_anew(tmp_path,
                                                                                                    caplog):
    control = FakeControl(registrations=[Gone("401: unknown node token"), registered("new", "mvn_new", "100.64.0.9")])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.identity is not None and made.identity.node_id == "new")
    assert control.tokens() == ["mvn_node", JOIN] and made.delays == []
    assert made.state.identity().node_id == "new" and len(events(caplog, "node_identity_rejected")) == 1


async def test_a_refused_join_token_backs_off_instead_of_hammering(tmp_path, caplog):
    refusals = [Gone("401: single-use join token was already used")] * 3 + [Refused("403: no")] * 2
    control = FakeControl(registrations=refusals)
    made = session(tmp_path, control)
    await drive(made, lambda: len(made.delays) == 5)
    assert made.delays == [0.5, 1.0, 2.0, 4.0, 8.0] and made.identity is None
    assert len(events(caplog, "registration_refused")) == 5 and not events(caplog, "node_identity_rejected")
    assert REFUSED_CAP == 30.0


async def test_no_join_token_and_no_identity_is_refused_and_retried_slowly(tmp_path):
    made = session(tmp_path, FakeControl(), join=None)
    await drive(made, lambda: len(made.delays) >= 8)
    assert made.delays[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, REFUSED_CAP, REFUSED_CAP]


@pytest.mark.parametrize("enrolled, cap", [(identity(offline_after=6.0), 2.0), (identity(offline_after=1.5), 0.5),
                                           (None, ENROLLING_CAP)])
async def test_an_unreachable_control_plane_is_retried_with_backoff_capped_for_the_offline_threshold(
        tmp_path, caplog, enrolled, cap):
    control = FakeControl(registrations=[TemporaryError("connect refused")] * 7 + [registered()])
    made = session(tmp_path, control, enrolled=enrolled)
    await drive(made, lambda: made.control.connected)
    assert made.delays == [min(cap, 0.5 * 2 ** n) for n in range(7)]
    assert len(events(caplog, "control_unreachable")) == 1 and len(events(caplog, "control_restored")) == 1


async def test_heartbeats_report_back_off_on_errors_and_follow_the_interval_they_are_given(tmp_path, caplog):
    answer = HeartbeatAnswer(revision=3, heartbeat_interval=2.5, offline_after=6.0)
    control = FakeControl([registered()], [TemporaryError("timeout")] * 3 + [answer, Refused("400: bad"), answer])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: not control.heartbeats and len(made.delays) == 6)
    assert made.delays == [0.5, 1.0, 2.0, 2.5, 2.0, 2.5]  # a refusal waits the usual interval
    heartbeat = next(call for call in control.calls if call[0] == "heartbeat")
    assert heartbeat[1:] == ("me", "mvn_node", {"applied_revision": None, "peers": []}, 1.0)  # (6 - 2 x 2) / 2
    assert len(events(caplog, "heartbeat_refused")) == 1


async def test_watch_answers_reach_the_netmap_the_cache_and_the_reconciler(tmp_path):
    stream = [full(4, [A]), delta(5, 4, [B], []), TemporaryError("netmap stream ended")]
    control = FakeControl([registered()], streams=[stream, [delta(6, 5, [], ["a"])]])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.netmap is not None and made.netmap.revision == 6)
    assert [call[2] for call in control.calls if call[0] == "watch"][:2] == [None, 5]
    assert [p.node_id for p in made.netmap.peers] == ["b"] and made.changed.is_set()
    assert made.delays[0] == 0.5  # the stream answered, so the reconnection waits the shortest time
    made.cache.flush()  # what a stopping agent does; a running one writes it within CACHE_EVERY
    cached = intake.netmap_of(intake.from_cache(made.state.netmap()))
    assert cached == made.netmap


class MovingControl(FakeControl):
    """A control plane whose first URL goes silent after one netmap: the heartbeats then fail over to
    the second URL (as the client does on a timeout) while the stream on the first hangs."""

    def __init__(self, heartbeats):
        super().__init__([registered()], heartbeats)
        self.first_netmap = asyncio.Event()

    async def heartbeat(self, node_id, token, body, timeout=None):
        await self.first_netmap.wait()
        answer = await super().heartbeat(node_id, token, body, timeout)
        self.url = "http://two.test"
        return answer

    async def watch(self, token, since):
        self.calls.append(("watch", self.url, since))
        if self.url == FakeControl.url:
            yield full(4, [A])
            self.first_netmap.set()
            await forever()  # silent: no answer, no reset
        yield full(5, [A, B])
        await forever()


async def test_the_netmap_stream_follows_heartbeats_that_failed_over(tmp_path):
    answer = HeartbeatAnswer(revision=5, heartbeat_interval=2.0, offline_after=6.0)
    control = MovingControl([answer])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.netmap is not None and made.netmap.revision == 5)
    assert [call[1:] for call in control.calls if call[0] == "watch"] == [(FakeControl.url, None),
                                                                           ("http://two.test", 4)]
    assert made.streaming_from == "http://two.test"


@pytest.mark.parametrize("interval, offline_after, timeout", [(2.0, 6.0, 1.0), (5.0, 30.0, 10.0), (2.0, 4.5, 0.5)])
def test_a_heartbeat_waits_half_of_what_the_offline_threshold_leaves_after_two_intervals(
        interval, offline_after, timeout):
    made = msgspec.structs.replace(identity(offline_after), heartbeat_interval=interval)
    assert heartbeat_timeout(made) == timeout


class FailingOverControl(FakeControl):
    """Heartbeats that time out and move the client to the next URL, as ControlClient does."""

    async def heartbeat(self, node_id, token, body, timeout=None):
        try:
            return await super().heartbeat(node_id, token, body, timeout)
        except TemporaryError:
            self.url = "http://two.test" if self.url == FakeControl.url else FakeControl.url
            raise


async def test_the_first_heartbeat_failure_that_moved_to_another_url_is_retried_there_at_once(tmp_path):
    answer = HeartbeatAnswer(revision=3, heartbeat_interval=2.0, offline_after=6.0)
    control = FailingOverControl([registered()], [answer, TemporaryError("timeout"), answer,
                                                  TemporaryError("timeout"), TemporaryError("timeout"), answer])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: not control.heartbeats and len(made.delays) == 6)
    assert made.delays == [2.0, 0.0, 2.0, 0.0, 1.0, 2.0]  # every URL failing: back to backing off


class SteadyControl(FakeControl):
    """One URL that answers heartbeats and keeps its netmap stream open."""

    async def watch(self, token, since):
        self.calls.append(("watch", token, since))
        yield full(4, [A])
        await forever()


async def test_a_stream_on_the_heartbeats_url_is_left_alone(tmp_path):
    answer = HeartbeatAnswer(revision=4, heartbeat_interval=2.0, offline_after=6.0)
    control = SteadyControl([registered()], [answer] * 3)
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: not control.heartbeats and made.netmap is not None)
    assert [call[0] for call in control.calls].count("watch") == 1 and not made.moved.is_set()


async def test_watch_errors_back_off_up_to_their_own_cap(tmp_path):
    control = FakeControl([registered()], streams=[[TemporaryError("down")]] * 6)
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: len(made.delays) == 6)
    assert made.delays == [0.5, 1.0, 2.0, 4.0, WATCH_CAP, WATCH_CAP]


async def test_a_netmap_that_describes_this_node_badly_is_rejected_and_the_last_good_one_kept(tmp_path, caplog):
    bad = full(5, [B], me={**ME, "mesh_ip": "10.0.0.1"})
    control = FakeControl([registered()], streams=[[full(4, [A]), bad],
                                                   [full(6, [A, {**B, "public_key": "junk"}])]])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.netmap is not None and made.netmap.revision == 6)
    assert len(events(caplog, "netmap_rejected")) == 1
    assert [p.node_id for p in made.netmap.peers] == ["a"] and [n for n, _ in made.netmap.rejected] == ["b"]
    assert len(events(caplog, "peer_rejected")) == 1
    assert [call[2] for call in control.calls if call[0] == "watch"][:2] == [None, 4], "again from the map held"


async def test_after_a_refused_answer_the_stream_starts_again_from_the_map_held(tmp_path, caplog):
    """The control plane moved the stream past the refused revision 5: its next delta, since 5, would
    fold revision 5's changes (B) into a map that never had them. The stream starts again from 4."""
    bad = delta(5, 4, [B], [], me={**ME, "mesh_ip": "10.0.0.1"})
    past_it = delta(6, 5, [], [])
    control = FakeControl([registered()], streams=[[full(4, [A]), bad, past_it], [delta(6, 4, [B], [])]])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.netmap is not None and made.netmap.revision == 6)
    assert sorted(p.node_id for p in made.netmap.peers) == ["a", "b"]
    assert [call[2] for call in control.calls if call[0] == "watch"][:2] == [None, 4]
    assert len(events(caplog, "netmap_rejected")) == 1


async def test_a_delta_that_does_not_continue_the_map_held_is_refused_and_the_stream_started_again(tmp_path, caplog):
    gap = delta(6, 5, [B], [])
    control = FakeControl([registered()], streams=[[full(4, [A]), gap], [gap], [full(6, [A, B])]])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: made.netmap is not None and made.netmap.revision == 6)
    assert [call[2] for call in control.calls if call[0] == "watch"][:3] == [None, 4, 4]
    assert made.delays[:2] == [0.5, 1.0], "only an answer taken resets the backoff, not a refused one"
    assert [r.reason for r in events(caplog, "netmap_rejected")] == [
        "a delta since revision 5 does not continue the map held (revision 4)"] * 2


async def test_removed_from_the_mesh_the_node_forgets_its_identity_drops_its_peers_and_stops(tmp_path, caplog):
    control = FakeControl(registrations=[registered()], streams=[[full(4, [A, B]), Gone("this node was removed")]])
    made = session(tmp_path, control, enrolled=identity())
    task = asyncio.create_task(made.run())
    async with asyncio.timeout(5):
        while made.identity is not None or made.netmap is None:
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    assert not task.done(), "it waits for the agent to be stopped"
    assert made.netmap.peers == () and made.netmap.revision == 4 and made.changed.is_set()
    assert made.state.identity() is None and made.state.netmap() is None
    assert control.tokens() == ["mvn_node"], "it does not enrol again"
    assert len(events(caplog, "node_removed")) == 1
    made.stop.set()
    await asyncio.wait_for(task, 1)


async def test_the_cached_netmap_is_restored_for_an_enrolled_node(tmp_path, caplog):
    first = session(tmp_path, FakeControl(), enrolled=identity())
    first.take(full(4, [A]))
    restarted = session(tmp_path, FakeControl())
    restarted.restore()
    assert restarted.netmap == first.netmap and restarted.changed.is_set()
    assert len(events(caplog, "netmap_restored")) == 1
    restarted.state.save_netmap(b"{garbage")
    again = session(tmp_path, FakeControl())
    again.restore()
    assert again.netmap is None and len(events(caplog, "netmap_cache_ignored")) == 1


async def test_an_unexpected_failure_is_logged_and_the_session_starts_over(tmp_path, caplog):
    control = FakeControl(registrations=[registered(), registered()], streams=[[RuntimeError("bug")]])
    made = session(tmp_path, control, enrolled=identity())
    await drive(made, lambda: len(control.tokens()) == 2)
    assert len(events(caplog, "session_failed")) == 1 and made.delays[0] == 0.5


async def test_a_flood_of_netmaps_writes_the_cache_once_a_second_the_latest_and_once_more_on_stop(tmp_path):
    made = session(tmp_path, FakeControl(), enrolled=identity())
    made.cache.every = 0.2
    writes: list[bytes] = []
    made.state.save_netmap = writes.append
    made.take(full(4, [A]))
    assert len(writes) == 1  # the first at once
    for revision in range(5, 105):
        made.take(full(revision, [A]))
    assert len(writes) == 1
    await asyncio.sleep(0.3)
    assert len(writes) == 2 and b'"revision":104' in writes[-1]  # then the latest, once
    made.take(full(105, [A]))
    made.cache.flush()  # stopping: what is due is written now
    assert len(writes) == 3 and b'"revision":105' in writes[-1]
    made.cache.flush()
    assert len(writes) == 3


async def test_a_rejected_peer_is_logged_once_not_with_every_revision(tmp_path, caplog):
    made = session(tmp_path, FakeControl(), enrolled=identity())
    bad = {**B, "public_key": "not a key"}
    for revision in range(4, 14):
        made.take(full(revision, [A, bad]))
    assert len(events(caplog, "peer_rejected")) == 1
