"""Token buckets per node (pure): a burst passes, then one change per refill interval."""
from meshcommon.plumbing.budget import Budgets


def test_a_burst_passes_then_changes_drip_back_one_by_one():
    budgets = Budgets(capacity=3, per_second=0.1)
    assert [budgets.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert budgets.take("b", 0.0), "each node has its own"
    assert budgets.wait("a", 0.0) == 10.0 and not budgets.take("a", 9.9)
    assert budgets.take("a", 10.0) and not budgets.take("a", 10.0)
    assert [budgets.take("a", 1000.0) for _ in range(4)] == [True, True, True, False]  # full again, not more
    budgets.forget("a")
    assert budgets.take("a", 1000.0) and budgets.wait("c", 0.0) == 0.0
