"""The limits' sans-IO parts: the client memory budget, refusal counting, the
argument cap a reader checks at a command's header."""

from __future__ import annotations

import pytest

from geocache.config import MIN_CLIENT_MEMORY, NodeConfig
from geocache.protocol.reader import ProtocolError, RequestReader
from geocache.server.limits import ClientBudget, Refusals
from geocache.server.resp import ARGUMENT_SLACK, max_arguments


class Holder:
    def __init__(self, budget: ClientBudget, held: int) -> None:
        self.budget = budget
        self.held_bytes = held
        self.evicted = ""
        budget.change(held)

    def evict(self, reason: str) -> None:
        self.evicted = reason
        self.budget.change(-self.held_bytes)
        self.held_bytes = 0


def test_past_the_budget_the_biggest_holders_go_until_it_fits() -> None:
    budget = ClientBudget(limit=100)
    small, big, bigger = Holder(budget, 10), Holder(budget, 60), Holder(budget, 70)
    budget.enforce([small, big, bigger])
    assert (small.evicted, big.evicted, bigger.evicted) == ("", "", "client_memory")
    assert budget.used == 70 and budget.evictions == 1


def test_no_limit_evicts_nobody() -> None:
    budget = ClientBudget(limit=0)
    holder = Holder(budget, 1 << 40)
    budget.enforce([holder])
    assert holder.evicted == ""


def test_the_default_budget_is_a_quarter_of_max_bytes_with_a_floor() -> None:
    assert NodeConfig(max_bytes=1 << 30).client_memory_limit == 1 << 28
    assert NodeConfig(max_bytes=64 << 20).client_memory_limit == MIN_CLIENT_MEMORY
    assert NodeConfig(max_bytes=0).client_memory_limit == 0
    assert NodeConfig(max_bytes=0, max_client_memory=5 << 20).client_memory_limit == 5 << 20


def test_refusals_are_counted_every_time_and_logged_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    refusals = Refusals(clock=lambda: now[0])
    for _ in range(50):
        refusals.count("max_clients", "1.2.3.4:5")
    now[0] += 1.5
    refusals.count("max_clients", "1.2.3.4:5")
    assert refusals.counts["max_clients"] == 51
    lines = [r for r in caplog.records if r.name == "geocache.limits"]
    assert len(lines) == 2
    assert lines[1].__dict__["not_logged"] == 49


def test_a_command_with_too_many_arguments_is_refused_at_its_header() -> None:
    cap = max_arguments(NodeConfig(cluster_secret="s", max_keys_per_command=10))
    assert cap == 20 + ARGUMENT_SLACK
    reader = RequestReader(max_multibulk_len=cap)
    reader.feed(b"*%d\r\n$6\r\nEXISTS\r\n" % (cap + 1))
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        reader.gets()
    peer = RequestReader(max_multibulk_len=cap)
    peer.set_max_multibulk_len(1000)
    peer.feed(b"*%d\r\n" % (cap + 1) + b"$1\r\nk\r\n" * (cap + 1))
    assert peer.gets() == [b"k"] * (cap + 1)


def test_standalone_commands_keep_redis_argument_limit() -> None:
    assert max_arguments(NodeConfig()) == 1024 * 1024
