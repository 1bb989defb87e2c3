"""Where each piece of work runs (trio and asyncio, round by round) and the run's counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple

import anyio
import trio

# -- event loops --------------------------------------------------------------------------------

BACKENDS = ("trio", "asyncio")
"""The event loops the engine is measured on, in the table's order."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Loops:
    """Where each piece of work runs: the one place that knows about event loops.

    The engine's work runs through AnyIO on each chosen backend, in a fresh event loop per call
    (a commander serves the next loop once the previous one has ended). Measurements go round by
    round: in each round every backend makes one run, the first backend alternating from one
    round to the next, so that both meet the same phases of a noisy machine and a round's runs
    can be paired. The bare loop and the setting up (recording a mission's writes, building the
    waiting database) run on trio, the reference, whatever the chosen backends.
    """

    def __init__(self, backends: Iterable[str]) -> None:
        chosen = set(backends)
        self.backends = tuple(backend for backend in BACKENDS if backend in chosen)
        if not self.backends:
            raise ValueError(f"no backend chosen of {', '.join(BACKENDS)}")

    def run(self, backend: str, work: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """``work(*args)`` in a fresh event loop of ``backend``."""
        return anyio.run(work, *args, backend=backend)

    def reference(self, work: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """``work(*args)`` in a fresh trio loop: the bare loop and the setting up."""
        return trio.run(work, *args)

    def each(self, work: Callable[[str], Awaitable[T]]) -> dict[str, T]:
        """``work(backend)`` once on every chosen backend."""
        return {backend: self.run(backend, work, backend) for backend in self.backends}

    def rounds(self, count: int) -> Iterator[tuple[str, ...]]:
        """The order of the backends in each of ``count`` rounds."""
        for n in range(count):
            yield self.backends if n % 2 == 0 else self.backends[::-1]

    def measure(
        self, order: Sequence[str], into: dict[str, list[T]], work: Callable[[str], Awaitable[T]]
    ) -> None:
        """One round: ``work(backend)`` on each backend in ``order``, added to ``into``."""
        for backend in order:
            into[backend].append(self.run(backend, work, backend))

    def samples(self) -> dict[str, list[Any]]:
        """An empty list of samples per backend."""
        return {backend: [] for backend in self.backends}


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    quick: bool
    repeat: int
    profile: bool
    s1_missions: int
    s1_full_missions: int
    s2_missions: int
    s3_missions: int
    s4_missions: int
    s4_sleep: float
    waiting: int
    due: int
    s7_history: int
    s7_samples: int
    s9_iteration: int
    s10_stored: tuple[int, ...]
    s10_missions: int
    warm_up: int
    reference: str | None = None
    """The fixed reference loop's script, if given (else looked for: bench_reference)."""

    @classmethod
    def make(
        cls, *, quick: bool, repeat: int | None, profile: bool, reference: str | None = None
    ) -> Config:
        if quick:
            return cls(
                quick=True,
                repeat=repeat or 2,
                profile=profile,
                s1_missions=200,
                s1_full_missions=50,
                s2_missions=100,
                s3_missions=50,
                s4_missions=20,
                s4_sleep=0.2,
                waiting=5_000,
                due=100,
                s7_history=1_000,
                s7_samples=20,
                s9_iteration=1_000,
                s10_stored=(500, 2_000, 5_000),
                s10_missions=200,
                warm_up=20,
                reference=reference,
            )
        return cls(
            quick=False,
            repeat=repeat or 5,
            profile=profile,
            s1_missions=3_000,
            s1_full_missions=300,
            s2_missions=1_000,
            s3_missions=500,
            s4_missions=200,
            s4_sleep=1.0,
            waiting=100_000,
            due=100,
            s7_history=1_000,
            s7_samples=200,
            s9_iteration=1_000,
            s10_stored=(2_000, 20_000, 100_000),
            s10_missions=1_000,
            warm_up=200,
            reference=reference,
        )
