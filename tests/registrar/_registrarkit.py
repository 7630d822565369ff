"""A registrar's server over real sessions on memory streams, its book in a
temp directory (the book's calls run on the event loop, so it runs on
virtual time as well as real)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from onionpost.home import AgencyDirectory, KdfCost, KeySource
from onionpost.host import InlineWorker
from onionpost.limits import MAX_DELEGATION_LIFETIME
from onionpost.proto.registrar import EnrolmentCode
from onionpost.proto.trust import Anchor, HybridSigner
from onionpost.registrar import RegistrarBook, RegistrarPolicy, RegistrarServer, init_registrar
from onionpost.testing.memory import Client, MemoryListener, Peer
from onionpost.transport import connect, serve

PASS: Final = KeySource(passphrase="correct horse battery staple", kdf_cost=KdfCost.FLOOR)
STORE_KEY: Final = bytes(range(32))


@dataclass(eq=False)
class Registrar:
    agency: AgencyDirectory
    anchor: Anchor
    book: RegistrarBook
    server: RegistrarServer
    listener: MemoryListener
    peer: Peer
    now: Callable[[], int]
    changes: list[list[bytes]] = field(default_factory=list)

    async def code(
        self, endpoint: str = "Field office 3", unit: str = "U", expires: int = 600
    ) -> EnrolmentCode:
        return (await self.server.new_code(endpoint, unit, expires)).code

    async def connect(self, peer: Peer) -> Client:
        stream = await self.listener.connect()
        channel = await connect(
            stream, identity=peer.identity, static=peer.static, peer=self.peer.address
        )
        return Client(peer, channel, stream)


def make_agency(
    root: Path, now: int, *, mldsa: bool = False, lifetime: int = MAX_DELEGATION_LIFETIME
) -> tuple[AgencyDirectory, Anchor, HybridSigner]:
    agency, anchor = AgencyDirectory.create(
        root / "agency", "acme", PASS, now=now, mldsa=mldsa, lifetime=lifetime
    )
    signer = agency.issuer(PASS)
    assert isinstance(signer, HybridSigner)
    return agency, anchor, signer


@asynccontextmanager
async def running_registrar(
    root: Path, *, lifetime: int = MAX_DELEGATION_LIFETIME, **policy: Any
) -> AsyncIterator[Registrar]:
    """A registrar serving on memory streams; its clock the wall clock's second
    at the start plus trio's time, its delegation ``lifetime`` seconds from then."""
    start = int(time.time())
    agency, anchor, signer = make_agency(root, start, lifetime=lifetime)
    book = init_registrar(root / "registrar", agency, signer, STORE_KEY)
    peer = Peer()
    registrar: Registrar | None = None

    async def changed() -> None:
        assert registrar is not None
        registrar.changes.append(registrar.server.authorized_clients())

    def now() -> int:
        return start + int(trio.current_time())

    server = RegistrarServer(
        book,
        RegistrarPolicy(**policy),
        address=peer.address,
        clients_changed=changed,
        clock=now,
        worker=InlineWorker(),
    )
    listener = MemoryListener()
    registrar = Registrar(agency, anchor, book, server, listener, peer, now)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await nursery.start(
            partial(
                serve,
                server.run_inbound,
                [listener],
                identity=peer.identity,
                static=peer.static,
                decide=server.decide,
            )
        )
        yield registrar
        nursery.cancel_scope.cancel()
