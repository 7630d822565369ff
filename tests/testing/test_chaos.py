"""The chaos and soak harnesses' own logic, without tor: the seeded schedule,
the history's checks (against endpoints' records made up here) and the growth
check. The runs themselves are in ``tests/chaos/test_chaos_tor.py``."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from onionpost import api
from onionpost.home import Paths
from onionpost.testing import chaos
from onionpost.testing.soak import Series, growth_violations

ENDPOINTS = ["ep0", "ep1", "ep2"]


def _plan(seed: int, **changes: Any) -> list[chaos.Fault]:
    options = chaos.ChaosOptions.short(seed, **changes)
    return chaos.plan_faults(options, ENDPOINTS, ["box0"], ["relay0", "relay1"])


def test_the_schedule_is_the_seeds_alone() -> None:
    assert _plan(11) == _plan(11)
    assert _plan(11) != _plan(12)


@pytest.mark.parametrize("seed", range(20))
def test_the_short_schedule_plays_every_kind_one_target_at_a_time(seed: int) -> None:
    faults = _plan(seed)
    assert {f.kind for f in faults} == set(chaos.KINDS)
    options = chaos.ChaosOptions.short(seed)
    until: dict[str, float] = {}
    for fault in faults:
        assert fault.at < options.seconds
        assert until.get(fault.target, 0.0) <= fault.at, fault
        until[fault.target] = fault.at + fault.seconds + options.restart_allowance
        if fault.kind == chaos.SIGSTOP:
            assert options.stop_seconds[0] <= fault.seconds <= options.stop_seconds[1]


@pytest.mark.parametrize("seed", range(5))
def test_the_full_form_plays_at_least_200_faults_in_its_hour(seed: int) -> None:
    options = chaos.ChaosOptions(seed=seed)
    endpoints = [f"ep{i}" for i in range(options.endpoints)]
    mailboxes = [f"box{i}" for i in range(options.mailboxes)]
    faults = chaos.plan_faults(options, endpoints, mailboxes, ["relay0", "relay1"])
    assert len(faults) >= 200
    assert {f.kind for f in faults} == set(chaos.KINDS)


def test_kinds_left_out_are_not_played() -> None:
    faults = _plan(3, disk_full=False, relay_restarts=False)
    assert not {chaos.DISK_FULL, chaos.RELAY_RESTART} & {f.kind for f in faults}


# -- the checks, against made-up records ---------------------------------------------------------


class Records(chaos.Fleet):
    """A fleet whose endpoints' records are given, not asked of daemons."""

    def __init__(self, root: Path) -> None:
        endpoints: Any = [SimpleNamespace(name=n) for n in ENDPOINTS]
        super().__init__(root, None, endpoints, [])  # type: ignore[arg-type]
        self.inboxes: dict[str, list[api.Message]] = {n: [] for n in ENDPOINTS}
        self.states: dict[tuple[str, str], str] = {}
        self.digests: dict[tuple[str, str], str] = {}

    async def inbox(self, endpoint: Any) -> list[api.Message]:
        return self.inboxes[endpoint.name]

    async def state(self, endpoint: Any, message_id: str) -> str:
        return self.states.get((endpoint.name, message_id), "missing")

    async def reason(self, endpoint: Any, message_id: str) -> int | None:
        return 7

    async def export_digest(self, endpoint: Any, message_id: str) -> str:
        return self.digests[endpoint.name, message_id]

    def sent(self, op: chaos.Op, outcome: chaos.Outcome = "ok", state: str = "delivered") -> None:
        op.outcome = outcome
        self.history.ops.append(op)
        if state != "missing":
            self.states[op.sender, op.id] = state

    def arrives(self, op: chaos.Op, **changes: Any) -> None:
        fields: dict[str, Any] = {
            "id": op.id,
            "contact": op.sender,
            "direction": api.Direction.IN,
            "kind": api.Kind(op.kind),
            "state": api.MessageState.RECEIVED,
            "created_ms": 1,
            "seq": len(self.inboxes[op.to]) + 1,
        }
        if op.kind == "text":
            fields["body"] = op.body
        else:
            fields["file"] = api.FileInfo(f"{op.id}.bin", op.size, True)
            self.digests[op.to, op.id] = op.digest
        fields.update(changes)
        self.inboxes[op.to].append(api.Message(**fields))


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path)


def _ops(records: Records) -> tuple[chaos.Op, chaos.Op]:
    rng = random.Random(1)
    return records.text(rng, "ep0", "ep1", "hello"), records.file(rng, "ep1", "ep2", 1000)


async def test_a_clean_history_has_no_violation(records: Records) -> None:
    text, file = _ops(records)
    for op in (text, file):
        records.sent(op)
        records.arrives(op)
    assert await chaos.check(records) == []


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("lost", "acknowledged, never arrived"),
        ("twice", "2 times in ep1's inbox"),
        ("body", "differs"),
        ("stuck", "ended deposited, with no reason"),
        ("unknown", "unknown to its sender"),
        ("phantom", "was never sent"),
        ("failed-arrived", "though its send failed"),
        ("hash", "BLAKE2b"),
        ("incomplete", "incomplete"),
    ],
)
async def test_each_kind_of_damage_is_a_violation(records: Records, damage: str, says: str) -> None:
    text, file = _ops(records)
    records.sent(text, state="deposited" if damage == "stuck" else "delivered")
    records.sent(file)
    records.arrives(file)
    if damage == "hash":
        records.digests["ep2", file.id] = "0" * 128
    if damage == "incomplete":
        records.inboxes["ep2"][-1] = api.Message(
            **{**vars(records.inboxes["ep2"][-1]), "file": api.FileInfo("f", 10, False)}
        )
    if damage != "lost":
        records.arrives(text, body="hullo" if damage == "body" else text.body)
    if damage == "twice":
        records.arrives(text)
    if damage == "unknown":
        del records.states["ep0", text.id]
    if damage == "phantom":
        records.arrives(records.text(random.Random(2), "ep2", "ep0", "never sent"))
    if damage == "failed-arrived":
        late = records.text(random.Random(3), "ep2", "ep0", "failed")
        records.sent(late, outcome="fail", state="missing")
        records.arrives(late)
    violations = await chaos.check(records)
    assert violations, damage
    assert any(says in v for v in violations), violations


async def test_an_unknown_send_may_be_lost_but_not_doubled(records: Records) -> None:
    text, _ = _ops(records)
    records.sent(text, outcome="info", state="missing")
    assert await chaos.check(records) == []
    records.arrives(text)
    records.arrives(text)
    assert any("2 times" in v for v in await chaos.check(records))


async def test_an_expired_message_is_a_stated_reason_not_a_violation(records: Records) -> None:
    text, _ = _ops(records)
    records.sent(text, state="expired")
    assert await chaos.check(records) == []
    assert any("expired (reason 7)" in note for note in records.notes)


# -- growth ------------------------------------------------------------------------------------


def _series(values: list[int], unit: str = "KiB") -> Series:
    return Series("p RSS", unit, True, [(float(t), v) for t, v in enumerate(values)])


def test_growth_that_levels_off_passes_and_growth_that_does_not_fails() -> None:
    level = _series([50, 80, 90, 100, 100, 101, 100, 102])
    _, violations = growth_violations([level], 8.0, 0.10, 2)
    assert violations == []
    leak = _series([50, 60, 70, 80, 90, 100, 110, 120])
    _, violations = growth_violations([leak], 8.0, 0.10, 2)
    assert len(violations) == 1
    assert "grew" in violations[0]


def test_fds_have_a_small_slack() -> None:
    fds = _series([17, 17, 17, 17, 18, 19, 19, 19], unit="fds")
    assert growth_violations([fds], 8.0, 0.10, 2)[1] == []
    assert growth_violations([fds], 8.0, 0.10, 0)[1] != []


def test_the_store_files_are_the_homes(tmp_path: Path) -> None:
    paths = Paths.for_home(tmp_path)
    assert tmp_path / chaos.STORE_FILE == paths.store
    assert tmp_path / chaos.MAILBOX_STORE_FILE == paths.mailbox_store


def test_a_process_that_exited_and_is_not_reaped_is_gone() -> None:
    """The soak's sampler reads /proc/PID/status; a zombie has no VmRSS line."""
    child = subprocess.Popen(["true"])
    assert chaos.proc_status(os.getpid())["VmRSS"] > 0
    deadline = time.monotonic() + 30
    state = ""
    while state != "Z" and time.monotonic() < deadline:  # until it has exited, not reaped
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        state = stat[stat.rindex(")") + 2 :].split()[0]
    assert state == "Z"
    assert chaos.proc_status(child.pid) == {}
    child.wait()
    assert chaos.proc_status(child.pid) == {}
