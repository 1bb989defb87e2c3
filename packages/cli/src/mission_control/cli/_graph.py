"""``graph DEFINITION [MISSION]``: a definition as a Mermaid flowchart, a mission's node states
laid over it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mission_control.core import DefinitionDescription, NodeDescription, NodeStatus

# Each node status's class, and how it is drawn.
_CLASSES: dict[str, str] = {
    "done": "fill:#d3f9d8,stroke:#2b8a3e",
    "running": "fill:#fff3bf,stroke:#f08c00,stroke-width:3px",
    "waiting": "fill:#d0ebff,stroke:#1971c2,stroke-width:3px",
    "failed": "fill:#ffe3e3,stroke:#c92a2a,stroke-width:3px",
}
_CLASS_OF: dict[NodeStatus, str] = {
    NodeStatus.COMPLETED: "done",
    NodeStatus.RUNNING: "running",
    NodeStatus.WAITING: "waiting",
    NodeStatus.FAILED: "failed",
    NodeStatus.TIMED_OUT: "failed",
    NodeStatus.CANCELLED: "failed",
}


_SPLITS = frozenset({"parallel", "choice"})


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def _shape(node: NodeDescription, ident: str) -> str:
    label = _label(f"{node.name}<br/>({node.kind})")
    match node.kind:
        case "end":
            return f'{ident}(("{_label(node.name)}"))'
        case "start":
            return f'{ident}(["{label}"])'
        case "need_to" | "sleep":
            return f'{ident}{{{{"{label}"}}}}'
        case "choice":
            return f'{ident}{{"{label}"}}'
        case "parallel" | "loop" | "for_each" | "child":
            return f'{ident}[["{label}"]]'
        case _:
            return f'{ident}["{label}"]'


class _Chart:
    def __init__(self) -> None:
        self.lines: list[str] = ["flowchart TD"]
        self.ids: dict[str, str] = {}

    def ident(self, path: str) -> str:
        return self.ids.setdefault(path, f"n{len(self.ids)}")

    def chain(self, nodes: Sequence[NodeDescription], after: str | None, indent: str) -> str | None:
        """Draw ``nodes`` in order, each leading to the next, the last to ``after``; returns the
        first node's id."""
        first: str | None = None
        for index, node in enumerate(nodes):
            ident = self.ident(node.path or node.name)
            first = first or ident
            self.lines.append(indent + _shape(node, ident))
            # A branch rejoins its container's chain where that chain goes on.
            following = (
                self.ident(nodes[index + 1].path or nodes[index + 1].name)
                if index + 1 < len(nodes)
                else after
            )
            for branch, branch_nodes in node.branches:
                looping = branch == "*"
                # Quoted: a branch's name may hold what an edge label's syntax uses ("|").
                label = "each" if looping else _label(branch)
                start = self.chain(branch_nodes, ident if looping else following, indent)
                target = start or following
                if target is not None:
                    self.lines.append(f'{indent}{ident} -->|"{label}"| {target}')
            # Only through its branches (or paths) does a parallel (or choice) go on.
            if following is not None and not (node.branches and node.kind in _SPLITS):
                self.lines.append(f"{indent}{ident} --> {following}")
        return first


def mermaid(
    description: DefinitionDescription,
    states: Mapping[str, NodeStatus] | None = None,
    *,
    note: str | None = None,
) -> str:
    """The flowchart of ``description``; ``states`` (a mission's node statuses by path) colour
    its nodes: done, running, waiting, failed. ``note`` is a comment line under the title."""
    chart = _Chart()
    chart.lines.append(f"  %% {_label(description.name)}, version {description.version}")
    if note is not None:
        chart.lines.append(f"  %% {note}")
    chart.chain(description.nodes, None, "  ")
    if description.on_deadline:
        chart.lines.append('  deadline(("deadline"))')
        # The deadline path ends the mission through its end node.
        last = description.nodes[-1] if description.nodes else None
        end = chart.ids.get(last.path or last.name) if last and last.kind == "end" else None
        first = chart.chain(description.on_deadline, end, "  ")
        if first is not None:
            chart.lines.append(f"  deadline --> {first}")
    for name, style in _CLASSES.items():
        chart.lines.append(f"  classDef {name} {style}")
    for ident, status in _drawn_states(chart.ids, states or {}).items():
        chart.lines.append(f"  class {ident} {_CLASS_OF[status]}")
    return "\n".join(chart.lines) + "\n"


def _drawn_states(
    ids: Mapping[str, str], states: Mapping[str, NodeStatus]
) -> dict[str, NodeStatus]:
    """Each drawn node's state: a node of a loop's (or for_each's) body is drawn once, at
    ``<loop>/*/<name>``, with the state of its latest iteration (``<loop>/<i>/<name>``)."""
    latest: dict[str, tuple[tuple[int, ...], NodeStatus]] = {}
    for path, status in states.items():
        drawn: list[str] = []
        iterations: list[int] = []
        for part in path.split("/"):
            # An iteration number only where the chart has a body there: a branch may be
            # named with digits too.
            if part.isdigit() and any(p.startswith("/".join([*drawn, "*/"])) for p in ids):
                drawn.append("*")
                iterations.append(int(part))
            else:
                drawn.append(part)
        ident = ids.get("/".join(drawn))
        order = tuple(iterations)
        if ident is not None and (ident not in latest or latest[ident][0] <= order):
            latest[ident] = (order, status)
    return {ident: status for ident, (_, status) in latest.items()}
