"""``python -m bench``: every benchmark, one line each.

Line format: ``<name>: ours=<value> peer=<value> ratio=<ours/peer>``; facts
without a peer are ``<name>: <value><unit>``.
"""

from __future__ import annotations

import sys

from bench import (
    churn_bench,
    daemon_bench,
    evidence_bench,
    group_bench,
    mailbox_bench,
    noise_bench,
    onion_bench,
    revocation_bench,
    session_bench,
    store_bench,
    team_bench,
    trust_bench,
)


def main() -> int:
    sections = [
        noise_bench.run,
        store_bench.run,
        evidence_bench.run,
        trust_bench.run,
        group_bench.run,
        session_bench.run,
        onion_bench.run,
        daemon_bench.run,
        revocation_bench.run,
        team_bench.run,
        churn_bench.run,
        mailbox_bench.run,
    ]
    for section in sections:
        for result in section():
            print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
