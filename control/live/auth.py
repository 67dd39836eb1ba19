"""Authentication of requests: the admin token, node tokens and what a node token may act for.

Owns deciding who a bearer is. Node tokens are answered from the worker's membership cache
(refreshed once for a token registered through another worker a moment ago), so heartbeats and
netmap polls cost no database round trip. The admin token is compared in constant time.
Must not import the registry or the store.
"""
from __future__ import annotations

from control.live.membership import MembershipCache
from control.live.watch import RevisionFeed
from control.rules import tokens
from control.rules.errors import Forbidden, Unauthorized


class Auth:
    def __init__(self, admin_token: str, cache: MembershipCache, feed: RevisionFeed):
        self.admin_token = admin_token
        self.cache = cache
        self.feed = feed

    def check_admin(self, bearer: str | None) -> None:
        if not bearer or not tokens.same_secret(bearer, self.admin_token):
            raise Unauthorized("admin token required")

    async def node_for(self, bearer: str | None) -> str:
        """The id of the node whose token `bearer` is."""
        if not bearer or not bearer.startswith(tokens.NODE):
            raise Unauthorized("node token required")
        token_hash = tokens.digest(bearer)
        node_id = self.cache.node_for(token_hash)
        if node_id is None:  # registered through another worker a moment ago?
            await self.feed.refresh()
            node_id = self.cache.node_for(token_hash)
        if node_id is None:
            raise Unauthorized("unknown node token: the node was removed or never registered")
        return node_id

    async def own_node(self, bearer: str | None, node_id: str) -> str:
        """`node_id`, when `bearer` is that node's token: a node token acts for its own node only."""
        me = await self.node_for(bearer)
        if me != node_id:
            raise Forbidden("a node token acts for its own node only")
        return me

    async def removal_reason(self, bearer: str | None, node_id: str) -> str:
        """Why node `node_id` may be removed by `bearer`: it leaves (its own token), or the admin removes it."""
        if bearer is not None and bearer.startswith(tokens.NODE):
            await self.own_node(bearer, node_id)
            return "left"
        self.check_admin(bearer)
        return "admin"
