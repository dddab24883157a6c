"""session_file_system through whole turns: the simulator's scripted tool calls write, read, list,
grep, stat and delete files; the stored tool results say what happened, and the same tree is
visible over HTTP. Then parallel calls on one path, and a call run twice (as after a crash)."""

from __future__ import annotations

import uuid

from capabilities import session_file_system as fs_tools
from capabilities.base import ToolContext
from tests.loop.conftest import Loop
from tests.loop.test_capability_tools import completed_events, results

CAPABILITY = ["session_file_system"]


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"name": name, "arguments": arguments}


async def test_the_model_writes_then_reads_its_files(loop: Loop) -> None:
    script = [
        {
            "tool_calls": [
                call("write_file", path="notes/plan.md", content="# Plan\nfind the bug\nfix the bug\n"),
                call("write_file", path="/scratch.txt", content="temporary"),
            ]
        },
        {
            "tool_calls": [
                call("read_file", path="/notes/plan.md"),
                call("read_file", path="/notes/plan.md", start_line=2, max_lines=1),
                call("list_directory"),
                call("grep_files", pattern="bug$", glob="*.md"),
                call("stat_file", path="/notes"),
                call("read_file", path="../../etc/passwd"),
                call("write_file", path="/scratch.txt/inside", content="x"),
                call("read_file", path="/missing.txt"),
            ]
        },
        {"tool_calls": [call("delete_file", path="/scratch.txt"), call("delete_file", path="/notes")]},
        "Noted.",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=CAPABILITY)
    await loop.send(base, "plan it in a file")
    done = [r for _, _, r in await results(loop, base)]
    written, scratch, read, line_two, listing, grep, stat, escape, under_file, missing, rm, rm_dir = done

    assert written["result"] == {"path": "/notes/plan.md", "size": 32, "created": True}
    assert scratch["error"] is None
    assert read["result"]["content"] == "# Plan\nfind the bug\nfix the bug\n"
    assert read["result"]["total_lines"] == 3 and read["result"]["truncated"] is False
    assert line_two["result"]["content"] == "find the bug\n" and line_two["result"]["truncated"] is True
    assert "start_line=3" in line_two["result"]["note"]
    assert listing["result"]["entries"] == [
        {"name": "notes", "type": "directory"},
        {"name": "scratch.txt", "type": "file", "size": 9},
    ]
    assert [(m["path"], m["line"]) for m in grep["result"]["matches"]] == [
        ("/notes/plan.md", 2),
        ("/notes/plan.md", 3),
    ]
    assert stat["result"]["type"] == "directory" and stat["result"]["entries"] == 1
    assert escape["result"] is None and "outside the session's file tree" in escape["error"]
    assert "/scratch.txt is a file" in under_file["error"]
    assert "no such file or directory: /missing.txt" in missing["error"]
    assert rm["result"] == {"path": "/scratch.txt", "deleted": True, "removed": 1}
    assert rm_dir["result"] is None and "recursively" in rm_dir["error"]
    events = await completed_events(loop, base)
    assert sum(e["status"] == "error" for e in events.values()) == 4

    # The same tree over HTTP.
    page = await loop.client.get(f"{base}/fs/notes/plan.md")  # Everruns' SessionFile (issue 12)
    assert page.status_code == 200 and page.json()["content"].startswith("# Plan")
    assert (await loop.client.get(f"{base}/fs/scratch.txt")).status_code == 404


async def test_parallel_calls_on_one_path(loop: Loop) -> None:
    contents = [f"version {i}\n" * 50 for i in range(6)]
    script = [
        {"tool_calls": [call("write_file", path="/shared.txt", content=c) for c in contents]},
        {"tool_calls": [call("delete_file", path="/shared.txt") for _ in range(3)]},
        "Done.",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=CAPABILITY)
    frames = await loop.send(base, "write it six times at once")
    done = [r for _, _, r in await results(loop, base)]
    writes, deletes = done[:6], done[6:]
    assert all(w["error"] is None for w in writes), writes
    assert sorted(w["result"]["created"] for w in writes) == [False] * 5 + [True]
    # Exactly one delete removed the file; the others found nothing there, and said so.
    assert all(d["error"] is None for d in deletes), deletes
    assert sorted(d["result"]["deleted"] for d in deletes) == [False, False, True]
    assert frames[-1]["type"] == "turn.completed"


async def test_a_call_run_twice_does_no_harm(loop: Loop) -> None:
    """A worker that dies after a tool's change but before its result is stored runs the call
    again: the second run must leave the same tree and answer sensibly."""
    base = await loop.chat(capabilities=CAPABILITY)
    ctx = ToolContext(
        session_id=uuid.UUID(base.rsplit("/", 1)[1]), agent_id=uuid.UUID(base.split("/")[3]), db=loop.db
    )
    write = fs_tools.WriteFile(path="/out.txt", content="result")
    assert (await fs_tools.write_file(write, ctx))["created"] is True
    assert await fs_tools.write_file(write, ctx) == {"path": "/out.txt", "size": 6, "created": False}
    assert (await loop.client.get(f"{base}/fs/out.txt", params={"raw": "true"})).text == "result"
    remove = fs_tools.DeleteFile(path="/out.txt")
    assert (await fs_tools.delete_file(remove, ctx))["deleted"] is True
    again = await fs_tools.delete_file(remove, ctx)
    assert again == {"path": "/out.txt", "deleted": False, "removed": 0, "note": "nothing is at this path"}
