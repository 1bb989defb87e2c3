"""A writer of the release before schema 8 in a child process, for the tests of a database
migrated under a process that was already writing it.

    python schema7_writer_child.py DB

It opens DB with its own connection and writes missions with the statements of the adapter of
schema 7, which knows nothing of ``missions_of_no_tenant``: a mission's insert writes its row
(and its ``mission_tenants`` row when it has a tenant), a purge deletes its rows. It prints
``ready``, then obeys the JSON lines it reads on stdin, answering ``done`` to each, until its
input ends. Lines: ``{"insert": [<the missions row's 8 values>], "tenant": <str or null>}``,
``{"purge": <mission id>}``. Its statements stay prepared between lines, as an adapter's do.
"""

from __future__ import annotations

import json
import sys

import apsw

# The schema-7 adapter's statements, word for word.
INSERT_MISSION = (
    "INSERT INTO missions (id, definition, definition_version, status, due_at, revision, "
    "snapshot, cancel_request) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
INSERT_TENANT = "INSERT INTO mission_tenants (id, tenant) VALUES (?, ?)"
DELETE_MISSION = (
    "DELETE FROM missions WHERE id = ? AND revision = ? "
    "AND status IN ('completed', 'failed', 'cancelled', 'compensated') RETURNING id"
)
DELETE_TIMELINE = "DELETE FROM timeline WHERE mission_id = ?"
DELETE_INBOX = "DELETE FROM inbox WHERE mission_id = ?"
DELETE_TENANT = "DELETE FROM mission_tenants WHERE id = ?"


def main() -> None:
    connection = apsw.Connection(sys.argv[1])
    connection.set_busy_timeout(10_000)
    cursor = connection.cursor()
    cursor.execute("SELECT count(*) FROM missions").fetchall()
    print("ready", flush=True)
    while line := sys.stdin.readline().strip():
        command = json.loads(line)
        cursor.execute("BEGIN IMMEDIATE")
        if "insert" in command:
            row = command["insert"]
            cursor.execute(INSERT_MISSION, row)
            if connection.changes() == 1 and command["tenant"] is not None:
                cursor.execute(INSERT_TENANT, (row[0], command["tenant"]))
        else:
            mission_id = command["purge"]
            revision = cursor.execute(
                "SELECT revision FROM missions WHERE id = ?", (mission_id,)
            ).fetchall()[0][0]
            if cursor.execute(DELETE_MISSION, (mission_id, revision)).fetchall():
                for statement in (DELETE_TIMELINE, DELETE_INBOX, DELETE_TENANT):
                    cursor.execute(statement, (mission_id,))
        cursor.execute("COMMIT")
        print("done", flush=True)
    connection.close()


main()
