"""Which process serves which request, and that each handler fits its request.

A backend's ``handlers`` table is the only place that says what it serves:
the endpoint's daemon every request but the mailbox's setup code, the
mailbox its own few. Each handler takes its request's record and returns
its result (``Request[R]`` -> R), checked here from their annotations.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import trio

from onionpost import api
from onionpost.client import ApiError, open_client
from onionpost.host import Handlers, serve_api
from onionpost.mailbox import MailboxBackend
from onionpost.mailbox._server import MailboxPolicy
from onionpost.registrar import RegistrarBackend
from onionpost.testing.doubles import MemoryBackend, short_tmpdir
from onionpost.testing.memory import network

# Requests only a mailbox serves, and those both serve; subscribe is the server's own.
MAILBOX_ONLY = {api.MailboxCode}
MAILBOX_SERVES = {api.Whoami, api.GetStatus, api.MailboxCode, api.GetMailboxStatus, api.MailboxWipe}
SERVER_S_OWN = {api.Subscribe}
REGISTRAR_ONLY = {
    api.RegistrarCode,
    api.RegistrarRevoke,
    api.RegistrarList,
    api.RegistrarExportList,
    api.RegistrarDelegation,
}
REGISTRAR_SERVES = {api.Whoami, api.GetStatus} | REGISTRAR_ONLY


def _check_fits(handlers: Handlers) -> None:
    for request_type, handler in handlers.items():
        hints = typing.get_type_hints(handler)
        returned = hints.pop("return")
        (taken,) = hints.values()
        assert taken is request_type, (request_type, handler)
        result = request_type.RESULT
        if get_origin(result) is tuple:
            # A handler may build its result as any tuple of the record.
            assert get_origin(returned) is tuple, (request_type, returned)
            assert get_args(returned)[0] is get_args(result)[0]
        else:
            assert returned is result, (request_type, returned)


async def test_the_daemon_serves_every_request_but_the_mailbox_s(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        await alice.start(nursery)
        assert alice.daemon is not None
        handlers = alice.daemon.handlers
        served = set(handlers)
        expected = set(api.REQUESTS.values()) - MAILBOX_ONLY - SERVER_S_OWN - REGISTRAR_ONLY
        assert served == expected
        # One handler each, none shared by two request types.
        assert len({id(h.__func__) for h in handlers.values()}) == len(handlers)  # type: ignore[attr-defined]
        _check_fits(handlers)


@pytest.mark.parametrize(
    "request_record",
    [
        api.MailboxCode(),
        api.RegistrarCode("Desk"),
        api.RegistrarList(),
        api.RegistrarExportList(),
        api.RegistrarDelegation("AA=="),
    ],
)
async def test_the_daemon_says_where_a_request_it_does_not_serve_goes(
    tmp_path: Path, request_record: api.Request[Any]
) -> None:
    """`registrar list` against an endpoint's home is told of the registrar's
    home, not only of a mailbox's host."""
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        await alice.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as home:
            async with trio.open_nursery() as served:
                await served.start(serve_api, alice.daemon, home / "control.sock")
                async with open_client(socket_path=home / "control.sock") as client:
                    with pytest.raises(ApiError) as caught:
                        await client.request(request_record)
                    assert caught.value.code == "config"
                    said = str(caught.value)
                    assert "runs an endpoint, not a mailbox or a registrar" in said
                    assert "'mailbox code' runs on the mailbox's host" in said
                    assert "with the registrar's home" in said
                served.cancel_scope.cancel()


def test_the_mailbox_serves_its_requests_only() -> None:
    backend = MailboxBackend(
        None,  # type: ignore[arg-type] # not used to build the table
        None,  # type: ignore[arg-type]
        MailboxPolicy(),
        tor_status=lambda: api.TorStatus(api.TorState.OK),
    )
    assert set(backend.handlers) == MAILBOX_SERVES
    _check_fits(backend.handlers)


def test_the_registrar_serves_its_requests_only() -> None:
    backend = RegistrarBackend(
        None,  # type: ignore[arg-type] # not used to build the table
        None,  # type: ignore[arg-type]
        tor_status=lambda: api.TorStatus(api.TorState.OK),
    )
    assert set(backend.handlers) == REGISTRAR_SERVES
    _check_fits(backend.handlers)


def test_every_request_is_served_somewhere() -> None:
    everything = set(api.REQUESTS.values())
    endpoint = everything - MAILBOX_ONLY - SERVER_S_OWN - REGISTRAR_ONLY
    assert endpoint | MAILBOX_SERVES | SERVER_S_OWN | REGISTRAR_SERVES == everything


@pytest.mark.parametrize(
    ("request_record", "reason"),
    [
        (api.MailboxCode(), "this double serves no mailbox requests"),
        (api.MailboxPair("x"), "this double serves no mailbox requests"),
    ],
)
async def test_a_request_not_served_is_a_config_error(
    request_record: api.Request[Any], reason: str
) -> None:
    with short_tmpdir() as home:
        path = home / "run" / "control.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_api, MemoryBackend(), path)
            async with open_client(socket_path=path) as client:
                with pytest.raises(ApiError) as caught:
                    await client.request(request_record)
                assert caught.value.code == "config"
                assert str(caught.value) == f"{request_record.METHOD}: {reason}"
                assert (await client.whoami()).name == "alice"  # the connection lives on
            nursery.cancel_scope.cancel()
