"""Store records the store and matcher tests build, in one place."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from correlation.store import MessageRecord

REPO = Path(__file__).resolve().parent.parent


def message(message_id: str, at: float = 1000.0) -> MessageRecord:
    """An accepted message of tenant t1 ("hello" from Acme), created and updated at ``at``."""
    return MessageRecord(
        message_id=message_id,
        tenant_id="t1",
        source="Acme",
        destination="93791234567",
        data_coding=0,
        body=b"hello",
        created_at=at,
        updated_at=at,
    )


async def accept_then_kill_9(import_line: str, constructor: str) -> None:
    """In a process of its own: open the store ``constructor`` builds, accept m0..m199
    (all at once), record m0's part 1 as submitted to op (SMSC id AB, normalised ab),
    then SIGKILL itself right after those calls returned. The caller reopens the store
    and checks that nothing was lost."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        {import_line}
        from correlation.store import MessageRecord

        def message(message_id, at):
            return MessageRecord(message_id=message_id, tenant_id="t1", source="Acme",
                destination="93791234567", data_coding=0, body=b"hi", created_at=at, updated_at=at)

        async def main():
            store = {constructor}
            await store.open()
            accepts = (store.accept([message(f"m{{i}}", 1000.0 + i)]) for i in range(200))
            await asyncio.gather(*accepts)
            await store.record_submitted("m0", 1, 1, "op", "AB", "ab", 1001.0)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == -9, stderr.decode()
