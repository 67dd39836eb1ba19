"""Prometheus metrics of the control plane.

Owns the metric names. Membership gauges are read from the worker's cache at
scrape time; request counters and latencies are per worker process unless
PROMETHEUS_MULTIPROC_DIR is set (then every worker's figures are summed).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from control.live.membership import MembershipCache
from control.live.send_budget import SendBudget
from control.live.watch import RevisionFeed

REQUESTS = Counter("meshvpn_control_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("meshvpn_control_request_seconds", "Time to answer (long-polls excluded)",
                    ["route", "method"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1))
WAKE = Histogram("meshvpn_control_longpoll_wake_seconds",
                 "From this worker loading a new revision to a waiting long-poll's answer being ready",
                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
NETMAPS = Counter("meshvpn_control_netmap_answers_total", "Netmap answers by kind", ["kind"])


class MembershipCollector:
    def __init__(self, cache: MembershipCache, feed: RevisionFeed, budget: SendBudget):
        self.cache = cache
        self.feed = feed
        self.budget = budget

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        cache = self.cache
        yield GaugeMetricFamily("meshvpn_control_revision", "Membership revision this worker has loaded",
                                value=cache.revision)
        nodes = GaugeMetricFamily("meshvpn_control_nodes", "Registered nodes by state", labels=["state"])
        online = sum(1 for view in cache.nodes.values() if view.online)
        nodes.add_metric(["online"], online)
        nodes.add_metric(["offline"], len(cache.nodes) - online)
        yield nodes
        yield GaugeMetricFamily("meshvpn_control_longpoll_waiters", "Open long-polls in this worker",
                                value=self.feed.waiters)
        budget = self.budget
        yield GaugeMetricFamily("meshvpn_control_stream_bytes_in_flight",
                                "Bytes of large netmap events on their way to clients in this worker",
                                value=budget.in_flight)
        yield CounterMetricFamily("meshvpn_control_stream_budget_waits",
                                  "Large netmap events that waited for this worker's budget of bytes in flight",
                                  value=budget.waits)
        yield CounterMetricFamily("meshvpn_control_stream_budget_slow",
                                  "Large netmap events whose reader did not drain them in time (share given back)",
                                  value=budget.slow)


def exposition(cache: MembershipCache, feed: RevisionFeed, budget: SendBudget) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    membership = CollectorRegistry()
    membership.register(MembershipCollector(cache, feed, budget))
    return generate_latest(registry) + generate_latest(membership)
