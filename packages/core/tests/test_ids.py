import os
import re
import time

import pytest

from mission_control.core import SortableIds

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_ids_are_26_crockford_digits_holding_the_time_in_milliseconds() -> None:
    """An id is 26 Crockford base32 digits whose top 48 bits are the creation millisecond."""
    before = time.time_ns() // 1_000_000
    mission_id = SortableIds()()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(f"[{CROCKFORD}]{{26}}", mission_id)
    assert before <= _decode(mission_id) >> 80 <= after


def test_ids_from_one_generator_are_unique_and_sort_in_creation_order() -> None:
    """Ids made one after another, many in the same millisecond, are distinct and increasing."""
    ids = SortableIds()
    made = [ids() for _ in range(5_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)


def test_two_generators_do_not_repeat_each_other() -> None:
    """Generators share no sequence: ids made side by side by two of them differ."""
    first, second = SortableIds(), SortableIds()
    pairs = [(first(), second()) for _ in range(1_000)]
    assert all(a != b for a, b in pairs)


@pytest.mark.parametrize("value", [0, 1, 31, 32, 2**80 - 1, 2**128 - 1, 0x0123456789ABCDEF << 60])
def test_the_digits_spell_the_value(value: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text of an id decodes to exactly the 128-bit value it was made from."""
    import mission_control.core._ids as ids_module

    ms, randomness = value >> 80, value & (2**80 - 1)
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: ms * 1_000_000)
    monkeypatch.setattr(ids_module._random, "getrandbits", lambda _bits: randomness)
    assert _decode(SortableIds()()) == value


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    """After a fork, parent and child do not make the same random part in the same
    millisecond: the child's generator is seeded afresh."""
    import mission_control.core._ids as ids_module

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, str(ids_module._random.getrandbits(79)).encode())
        os._exit(0)
    os.close(write_end)
    parent = ids_module._random.getrandbits(79)
    with os.fdopen(read_end) as pipe:
        child = int(pipe.read())
    os.waitpid(pid, 0)
    assert parent != child
