"""A WAL checkpoint that fails (a full disk: the database file may not grow)
fails no write: the commit before it is durable in the WAL already. Found by
`make chaos`: a daemon under a full disk exited with SQLite's "disk I/O
error" from the checkpoint after a commit, which no one translated or
caught. The disk is made full for a child process alone, with RLIMIT_FSIZE
(each file at most its size then); Python ignores SIGXFSZ, so a write past
it fails with EFBIG, as it would with ENOSPC."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, logging, os, resource, sys
    from pathlib import Path
    import onionpost.store._database as database
    from tests.store._storekit import add_contact, open_store

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    root = Path(sys.argv[1])
    body = "x" * 40_000
    database._WAL_LIMIT = 0  # every commit checkpoints
    with open_store(root) as store:
        bob = add_contact(store)
        for n in range(12):  # a database file of ~0.5 MB, the WAL empty
            store.outbox.queue_text(bob.id, os.urandom(16), n, body, "text/plain", None)
        size = (root / "store.sqlite").stat().st_size
        # From now on no file may pass the database's size + 64 KiB.
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 65536, hard))
        queued = []
        for n in range(3):  # ~120 KB more: the WAL fits, the database file cannot grow
            message_id = os.urandom(16)
            store.outbox.queue_text(bob.id, message_id, 100 + n, body, "text/plain", None)
            queued.append(message_id.hex())
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        store.outbox.queue_text(bob.id, os.urandom(16), 200, "room again", "text/plain", None)
        grown = (root / "store.sqlite").stat().st_size - size
    with open_store(root) as store:
        found = [store.messages.message(bytes.fromhex(i), contact_id=bob.id) for i in queued]
        held = [m.id.hex() for m in found]
    print(json.dumps({"queued": queued, "held": held, "grown_after_room": grown}))
    """
)


def test_a_checkpoint_on_a_full_disk_fails_no_write(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # Every write returned, and each is there after the store is opened again.
    assert result["held"] == result["queued"]
    # Said once per failed checkpoint, as a StoreError, never the driver's error.
    failures = [ln for ln in done.stderr.splitlines() if "event=wal_checkpoint_failed" in ln]
    assert failures, done.stderr
    assert all("error=StoreError" in ln for ln in failures)
    # With room again, the next commit's checkpoint moves the texts into the
    # database file, which could not grow by more than 64 KiB before.
    assert result["grown_after_room"] > 65536
