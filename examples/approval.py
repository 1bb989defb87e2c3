"""The approval mission: start it, let it send an email, approve it with a signal.

Run it with ``uv run python examples/approval.py``. It uses the embedded default storage (the
in-memory adapter); swap in ``create_sqlite_persistence_adapter(path)`` to keep missions on disk.
"""

from __future__ import annotations

import json
from typing import TypedDict, cast

import trio

from mission_control.core import Context, converter, create_commander, m


class ApprovalRequest(TypedDict):
    email: str


class Approval(TypedDict):
    approvedBy: str


def field(value: object, name: str) -> object:
    return cast("dict[str, object]", value).get(name) if isinstance(value, dict) else None


def parse_request(value: ApprovalRequest) -> ApprovalRequest:
    email = field(value, "email")
    if not isinstance(email, str) or "@" not in email:
        raise ValueError("an approval request needs an 'email' containing '@'")
    return {"email": email}


def parse_approval(value: object) -> Approval:
    approved_by = field(value, "approvedBy")
    if not isinstance(approved_by, str):
        raise ValueError("an approval needs 'approvedBy' as a string")
    return {"approvedBy": approved_by}


async def begin(ctx: Context[ApprovalRequest, None]) -> ApprovalRequest:
    return {"email": ctx.input["email"]}


async def send_email(ctx: Context[ApprovalRequest, ApprovalRequest]) -> dict[str, str]:
    # A real mission would call a mail API here, passing ctx.idempotency_key so that a retry
    # after a crash does not send the email twice.
    return {"sentTo": ctx.events.start.output["email"]}


approval = (
    m.define("approval")
    .start(parse=parse_request, run=begin)
    .step("send-email", send_email, retry=m.retry(3, m.exponential(1, cap=30)))
    .need_to("receive-approval", parse=parse_approval)
    .end()
)


def show(title: str, value: object) -> None:
    print(f"--- {title}")
    print(json.dumps(converter.unstructure(value), indent=2))


async def main() -> None:
    async with create_commander([approval]) as commander:
        mission = await commander.start(approval, {"email": "ops@example.com"})
        waiting = await mission.inspect()
        print(f"mission {mission.id} is {waiting.status.value}, waiting for {waiting.wait}")
        await mission.signal("receive-approval", {"approvedBy": "reviewer-1"})
        show("snapshot after the signal", await mission.inspect())
        for entry in await mission.timeline():
            print(f"{entry.at.isoformat()}  {entry.kind.value:<18} {entry.node or ''}")


if __name__ == "__main__":
    trio.run(main)
