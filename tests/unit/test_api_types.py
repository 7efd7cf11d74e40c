"""The API's types catch mistakes before run time: `Literal` option names, and memoized
functions whose `invalidate` and `refresh` take the function's own arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.timeout(120)

SNIPPET = """
import geocache

local = geocache.LocalCache(serializer="pickel")
client = geocache.Client(on_error="mis", serializer="jsn")
fine = geocache.AsyncClient(on_error="miss", serializer="msgpack")

@local.memoize()
def area(width: int, height: int = 1) -> int:
    return width * height

ok: int = area(2) + area.refresh(2, height=3)
done: bool = area.invalidate(2)
area.invalidate("two")

@client.memoize()
async def name(user_id: int) -> str:
    return str(user_id)

async def use() -> None:
    text: str = await name(1)
    gone: bool = await name.invalidate(1)
    await name.refresh("one")

class Account:
    @local.memoize()
    def balance(self, currency: str = "EUR") -> str:
        return currency

owed: str = Account().balance("USD")
dropped: bool = Account.balance.invalidate(Account(), "USD")
"""


def test_typos_and_wrong_arguments_fail_the_type_check(tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET)
    out, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", "/dev/null", str(path)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = sorted(int(line.split(":")[1]) for line in errors)
    assert status == 1
    # serializer="pickel"; on_error="mis" and serializer="jsn"; invalidate("two");
    # refresh("one"): and nothing else (the correct calls, a method's too, type-check).
    assert lines == [4, 5, 5, 14, 23], out
