"""Figures, rows and the table: a row is the engine's samples on each backend, next to a
reference loop's samples taken in the same rounds (scripts/benchmark.py)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_profile import Profile


@dataclass(frozen=True)
class Stats:
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        values = tuple(samples)
        if not values:
            raise ValueError("no samples")
        return cls(values)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        """Half the min-to-max range, as a share of the median."""
        median = self.median
        return (self.high - self.low) / 2 / median if median else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread": self.spread,
            "samples": list(self.samples),
        }


def paired_ratio(engine: Sequence[float], bare: Sequence[float]) -> Stats:
    """Engine / bare for each pair of runs made next to each other."""
    return Stats.of(e / b for e, b in zip(engine, bare, strict=True))


ASYNCIO_MARGIN = 0.10
"""How far asyncio's figure may be from trio's (DESIGN, issue 12): at most 10% slower."""


@dataclass(frozen=True)
class Target:
    """A bound on a row's median, or (``of_bare``) on its ratio to the bare loop."""

    text: str
    bound: float
    at_most: bool
    of_bare: bool = False

    def met(self, value: Stats, vs_bare: Stats | None) -> bool:
        figure = vs_bare if self.of_bare else value
        if figure is None:
            raise ValueError(f"target {self.text!r} needs the bare loop")
        return figure.median <= self.bound if self.at_most else figure.median >= self.bound


@dataclass
class Row:
    scenario: int
    label: str
    unit: str
    values: dict[str, Stats]
    """The engine's figure on each backend that ran, by backend name; their samples are in
    round order, so that the two backends' runs of a round pair up."""
    bare: Stats | None = None
    vs_bare: dict[str, Stats] = field(default_factory=dict[str, Stats])
    """Each backend's figure / the bare loop's (of this row's unit), median of the runs paired
    in time."""
    target: Target | None = None
    reference: str = "mirror"
    """What the bare column is: ``mirror``, the bare loop of the adapter's own statements and
    rows (bench_bare), or ``fixed``, the fixed reference loop (bench_reference)."""

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "missions/s"

    @property
    def vs_trio(self) -> Stats | None:
        """asyncio / trio (of this row's unit), for each round's pair of runs."""
        if "asyncio" not in self.values or "trio" not in self.values:
            return None
        return paired_ratio(self.values["asyncio"].samples, self.values["trio"].samples)

    @property
    def asyncio_within_margin(self) -> bool | None:
        ratio = self.vs_trio
        if ratio is None:
            return None
        if self.higher_is_better:
            return ratio.median >= 1 - ASYNCIO_MARGIN
        return ratio.median <= 1 + ASYNCIO_MARGIN

    @property
    def met(self) -> dict[str, bool]:
        if self.target is None:
            return {}
        target = self.target
        return {b: target.met(value, self.vs_bare.get(b)) for b, value in self.values.items()}

    def to_json(self) -> dict[str, Any]:
        vs_trio = self.vs_trio
        return {
            "scenario": self.scenario,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "values": {b: value.to_json() for b, value in self.values.items()},
            "bare": self.bare.to_json() if self.bare is not None else None,
            "reference": self.reference,
            "ratio_to_bare": {b: ratio.to_json() for b, ratio in self.vs_bare.items()},
            "asyncio_to_trio": vs_trio.to_json() if vs_trio is not None else None,
            "asyncio_within_margin": self.asyncio_within_margin,
            "target": self.target.text if self.target is not None else None,
            "met": self.met,
        }


def row(
    scenario: int,
    label: str,
    unit: str,
    samples: Mapping[str, Sequence[float]],
    bare: Sequence[float] | None = None,
    *,
    target: Target | None = None,
    paired_with_bare: bool = True,
    reference: str = "mirror",
) -> Row:
    """A row of the engine's ``samples`` by backend, next to the bare loop's (in the same
    rounds) unless ``paired_with_bare`` is false (the bare figure is then only shown)."""
    vs_bare: dict[str, Stats] = {}
    if bare is not None and paired_with_bare:
        vs_bare = {backend: paired_ratio(values, bare) for backend, values in samples.items()}
    return Row(
        scenario,
        label,
        unit,
        {backend: Stats.of(values) for backend, values in samples.items()},
        Stats.of(bare) if bare is not None else None,
        vs_bare,
        target,
        reference,
    )


@dataclass
class Result:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list[Row])
    details: dict[str, Any] = field(default_factory=dict[str, Any])
    profiles: dict[str, Profile] = field(default_factory=dict[str, "Profile"])
    """cProfile of one extra engine run, by backend (with ``--profile``)."""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.number,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "details": self.details,
            "profiles": {
                backend: {"shares": profile.shares, "text": profile.text}
                for backend, profile in self.profiles.items()
            },
            "seconds": self.seconds,
        }


def _format(value: float, unit: str) -> str:
    if unit == "missions/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}"


def _format_ratio(ratio: Stats | None, higher_is_better: bool) -> str:
    if ratio is None:
        return ""
    return f"{ratio.median:.0%}" if higher_is_better else f"{ratio.median:.2f}x"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")


def _header(backends: Sequence[str]) -> tuple[tuple[str, ...], set[int]]:
    """The table's column names, and which of them are right-aligned."""
    columns = ["#", "measure"]
    for backend in backends:
        columns += [backend, "±"]
    if len(backends) > 1:
        columns += ["asyncio/trio", f"within {ASYNCIO_MARGIN:.0%}"]
    columns += ["bare loop (trio only)", f"{backends[0]} vs bare", "target", "met"]
    right = {i for i, name in enumerate(columns) if name not in ("#", "measure", "target", "met")}
    return tuple(columns), right


def _cells(row: Row, backends: Sequence[str]) -> tuple[str, ...]:
    cells = [str(row.scenario), row.label]
    for backend in backends:
        value = row.values.get(backend)
        cells += (
            ["", ""] if value is None else [_format(value.median, row.unit), f"±{value.spread:.0%}"]
        )
    if len(backends) > 1:
        cells += [_format_ratio(row.vs_trio, row.higher_is_better)]
        cells += [_yes_no(row.asyncio_within_margin)]
    met = row.met
    cells += [
        _format(row.bare.median, row.unit) if row.bare is not None else "",
        _format_ratio(row.vs_bare.get(backends[0]), row.higher_is_better),
        row.target.text if row.target is not None else "",
        "/".join(_yes_no(met[b]) for b in backends if b in met),
    ]
    return tuple(cells)


def render_table(
    results: Sequence[Result], backends: Sequence[str], *, markdown: bool = False
) -> str:
    header, right = _header(backends)
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        lines += [_cells(row, backends) for row in result.rows]
    if markdown:  # keep the indent of a row that details the one above
        lines = [tuple(cell.replace("  ", "&nbsp;&nbsp;", 1) for cell in line) for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out: list[str] = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        if markdown:
            out.append("| " + " | ".join(cells) + " |")
            if n == 0:
                rules = [
                    ("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)
                ]
                out.append("| " + " | ".join(rules) + " |")
        else:
            out.append("  ".join(cells).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
