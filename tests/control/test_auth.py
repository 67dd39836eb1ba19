"""Who a bearer is: the admin, a node (from the membership cache), acting for its own node only. No store."""
import pytest

from control.live.auth import Auth
from control.live.membership import MembershipCache
from control.rules import tokens
from control.rules.errors import Forbidden, Unauthorized
from control.rules.records import Loaded
from meshcommon.contract.wire import NodeView

pytestmark = pytest.mark.anyio
ADMIN = tokens.new_token(tokens.ADMIN)


def loaded(revision: int, *names: str) -> Loaded:
    """Membership with a node per name, its token `mvn_<name>`."""
    nodes = {name: (NodeView(name, name, "100.64.0.1", "A" * 43 + "=", None, 51820, True),
                    tokens.digest(f"{tokens.NODE}{name}")) for name in names}
    return Loaded(revision, 0, [(revision, name) for name in names], nodes, True)


class Feed:
    """A revision feed whose refresh loads `latest` (what another worker has committed)."""

    def __init__(self, cache: MembershipCache, latest: Loaded):
        self.cache, self.latest, self.refreshes = cache, latest, 0

    async def refresh(self) -> None:
        self.refreshes += 1
        self.cache.apply(self.latest)


@pytest.fixture
def auth():
    cache = MembershipCache("100.64.0.0/24")
    cache.apply(loaded(1, "a"))
    return Auth(ADMIN, cache, Feed(cache, loaded(2, "a", "b")))


@pytest.mark.parametrize("bearer", [None, "", "mva_wrong", f"{tokens.NODE}a"])
def test_only_the_admin_token_is_the_admin(auth, bearer):
    auth.check_admin(ADMIN)
    with pytest.raises(Unauthorized):
        auth.check_admin(bearer)


async def test_a_node_token_is_its_node_without_a_refresh(auth):
    assert await auth.node_for(f"{tokens.NODE}a") == "a" and auth.feed.refreshes == 0


async def test_a_node_registered_through_another_worker_is_found_after_one_refresh(auth):
    assert await auth.node_for(f"{tokens.NODE}b") == "b" and auth.feed.refreshes == 1


@pytest.mark.parametrize("bearer", [None, ADMIN, "mvj_x", f"{tokens.NODE}unknown"])
async def test_anything_else_is_no_node(auth, bearer):
    with pytest.raises(Unauthorized):
        await auth.node_for(bearer)


async def test_a_node_acts_for_itself_only(auth):
    assert await auth.own_node(f"{tokens.NODE}a", "a") == "a"
    with pytest.raises(Forbidden):
        await auth.own_node(f"{tokens.NODE}a", "b")


async def test_a_node_leaves_and_the_admin_removes(auth):
    assert await auth.removal_reason(f"{tokens.NODE}a", "a") == "left"
    assert await auth.removal_reason(ADMIN, "a") == "admin"
    with pytest.raises(Forbidden):
        await auth.removal_reason(f"{tokens.NODE}a", "b")
    with pytest.raises(Unauthorized):
        await auth.removal_reason("mvj_x", "a")
