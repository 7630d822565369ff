"""Two agencies and three endpoints on the private Tor network, made and
revoked as an operator does it (``protocol-spec/trust.md`` §7), for the
tor-marked test and ``make bench``'s ``revocation_to_refusal_s``.

::

    scene = Scene.make(root, net)     # agencies a.example, b.example; a1, a2, b1
    scene.start()                     # daemons up, anchors in, lists held
    scene.endorse(scene.a1)           # trust endorse + trust endorsement install
    scene.all_contacts()
    revoked = scene.revoke(scene.a1)  # the next list of a.example, a1 in it
    scene.a2.cli("trust", "revocations", "import", str(revoked))
    scene.wait(lambda: bool(refusal(scene.b1, "a1")), "b1 refusing a1", 60)

Theory of operation
-------------------
An :class:`OfflineAgency` is an agency's directory (``trust root-init``),
sealed with a key file (no passphrase KDF), driven through ``onionpost trust
endorse`` and ``trust revoke`` in a child process, as its officer runs them on
an offline machine. Agency A has endpoints ``a1`` and ``a2``, agency B has
``b1``; each endpoint installs both anchors (``trust add`` with the safety
number the agency printed) and holds its own agency's first list (``trust
revocations import``), so that an endorsement is judged ``endorsed``, not
``unverified-stale``. What an endpoint learns of the other agency's list it
learns only from its sessions (the ``TrustStaple``). ``b1``'s config.toml
sets ``require_endorsement = true``.

Every wait is a condition polled under a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from onionpost.testing.endpoint import CLI_SECONDS, FAST_RETRY, Endpoint, EndpointError, start_all
from onionpost.testing.testnet import Testnet

__all__ = [
    "REGISTRAR_READY",
    "OfflineAgency",
    "Registrar",
    "Scene",
    "delivered",
    "endorsement",
    "queued",
    "refusal",
    "running",
    "wait",
]

_POLL_SECONDS: Final = 0.25
#: What ``onionpost registrar serve`` writes once its onion service is published.
REGISTRAR_READY: Final = b"registrar ready"
# What ``trust enrol`` says while the registrar's tor has not published the
# descriptor that lets the code's key in: the same code is given again.
_NOT_YET: Final = "cannot be reached with this enrolment code"


class OfflineAgency:
    """An agency's offline directory, made by ``trust root-init``."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.dir = root / f"agency-{name}"
        self.key = root / f"agency-{name}.key"
        self._counter = 0
        self._root = root
        made = json.loads(
            self._run("trust", "root-init", "--dir", str(self.dir), "--agency", name, "--json")
        )
        self.anchor: str = made["anchor"]
        self.safety_number: str = made["safety_number"]

    def _run(self, *args: str) -> str:
        argv = [sys.executable, "-m", "onionpost", *args, "--key-file", str(self.key)]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=dict(os.environ),
                timeout=CLI_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EndpointError(f"agency {self.name}: onionpost {' '.join(args)} hung") from exc
        if done.returncode != 0:
            raise EndpointError(
                f"agency {self.name}: onionpost {' '.join(args)} exited with "
                f"{done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def _out(self, what: str) -> Path:
        self._counter += 1
        return self._root / f"agency-{self.name}-{self._counter}.{what}"

    def endorse_file(self, address: str, endpoint: str, *, replaces: str = "") -> Path:
        """``trust endorse``: the proof file the endpoint installs (or, with
        ``replaces``, the one it announces its move with, trust.md §6)."""
        out = self._out("endorsement")
        self._run(
            "trust",
            "endorse",
            address,
            "--dir",
            str(self.dir),
            "--endpoint",
            endpoint,
            "--unit",
            "Unit U",
            *(["--replaces", replaces] if replaces else []),
            "--out",
            str(out),
        )
        return out

    def revoke(self, address: str | None = None, reason: str = "") -> Path:
        """``trust revoke``: the next list (``address`` revoked in it), as a file."""
        out = self._out("revocations")
        args = ["trust", "revoke", *([address] if address else []), "--dir", str(self.dir)]
        self._run(*args, "--reason", reason, "--out", str(out))
        return out


@dataclass
class Scene:
    """Agencies ``a`` (endpoints ``a1``, ``a2``) and ``b`` (endpoint ``b1``)."""

    a: OfflineAgency
    b: OfflineAgency
    a1: Endpoint
    a2: Endpoint
    b1: Endpoint

    @classmethod
    def make(cls, root: Path, net: Testnet) -> Scene:
        a = OfflineAgency(root, "a.example")
        b = OfflineAgency(root, "b.example")
        required = FAST_RETRY + "require_endorsement = true\n"
        return cls(
            a,
            b,
            Endpoint(root, "a1", net),
            Endpoint(root, "a2", net),
            Endpoint(root, "b1", net, top_config=required),
        )

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.a1, self.a2, self.b1]

    def agency_of(self, endpoint: Endpoint) -> OfflineAgency:
        return self.b if endpoint is self.b1 else self.a

    def start(self) -> None:
        """Every daemon up; both anchors installed everywhere; each agency's
        first list held by its own endpoints."""
        start_all(self.endpoints)
        for endpoint in self.endpoints:
            for agency in (self.a, self.b):
                endpoint.cli("trust", "add", agency.anchor, "--safety-number", agency.safety_number)
        for agency, mine in ((self.a, [self.a1, self.a2]), (self.b, [self.b1])):
            first = agency.revoke()
            for endpoint in mine:
                endpoint.cli("trust", "revocations", "import", str(first))

    def endorse(self, endpoint: Endpoint) -> None:
        """Its agency endorses it; it installs the proof."""
        agency = self.agency_of(endpoint)
        address = endpoint.json("whoami")["address"]
        proof = agency.endorse_file(address, f"Office {endpoint.name}")
        endpoint.cli("trust", "endorsement", "install", str(proof))

    def all_contacts(self) -> None:
        cards = {e.name: e.json("whoami")["card"] for e in self.endpoints}
        for endpoint in self.endpoints:
            for name, card in cards.items():
                if name != endpoint.name:
                    endpoint.cli("contact", "add", card)

    def revoke(self, endpoint: Endpoint, reason: str = "seized") -> Path:
        """The next list of its agency, with it revoked."""
        address = endpoint.json("whoami")["address"]
        return self.agency_of(endpoint).revoke(address, reason)

    def stop(self) -> None:
        for endpoint in self.endpoints:
            endpoint.stop()


@contextlib.contextmanager
def running(*processes: Endpoint) -> Iterator[None]:
    """Every one of ``processes`` stopped when the block ends, the last given
    first; an :class:`EndpointError` raised in it carries each one's log tail
    (what explains nearly every failure on the network)."""
    try:
        yield
    except EndpointError as exc:
        logs = "\n".join(f"--- {e.name}\n{e.log_tail()}" for e in processes)
        raise EndpointError(f"{exc}\n{logs}") from exc
    finally:
        for process in reversed(processes):
            process.stop()


def wait(predicate: Callable[[], bool], what: str, seconds: float) -> float:
    """Poll until ``predicate`` holds; the seconds it took. EndpointError past ``seconds``."""
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - started
        time.sleep(_POLL_SECONDS)
    raise EndpointError(f"timed out after {seconds:.0f}s waiting for {what}")


def _contact(endpoint: Endpoint, name: str) -> dict[str, Any]:
    for contact in endpoint.json("contact", "list"):
        if contact["name"] == name:
            return dict(contact)
    raise EndpointError(f"{endpoint.name} has no contact {name}")


def _status(endpoint: Endpoint, name: str) -> dict[str, Any]:
    for contact in endpoint.json("status")["contacts"]:
        if contact["name"] == name:
            return dict(contact)
    raise EndpointError(f"{endpoint.name}'s status has no contact {name}")


def endorsement(endpoint: Endpoint, name: str) -> tuple[str | None, str | None]:
    """(``endorsement_status``, ``endorsement``) of contact ``name`` in ``contact list``."""
    contact = _contact(endpoint, name)
    return contact.get("endorsement_status"), contact.get("endorsement")


def refusal(endpoint: Endpoint, name: str) -> str:
    """Why ``endpoint`` refuses contact ``name`` (its status' ``refused``); "" if not."""
    return str(_status(endpoint, name).get("refused", ""))


def queued(endpoint: Endpoint, name: str) -> int:
    return int(_status(endpoint, name)["queued"])


def delivered(endpoint: Endpoint, message_id: str) -> bool:
    return endpoint.json("message", message_id)["state"] in {"delivered", "read"}


class Registrar(Endpoint):
    """A home made by ``onionpost init``, made the registrar of ``agency``
    (``registrar init``) and run by ``onionpost registrar serve`` with a
    ``[registrar]`` refresh of ``refresh`` seconds (trust.md §8)."""

    ready_line = REGISTRAR_READY

    def __init__(
        self, root: Path, name: str, net: Testnet, agency: OfflineAgency, *, refresh: int = 60
    ) -> None:
        super().__init__(root, name, net, top_config="")
        config = self.home / "config.toml"
        config.write_text(f"{config.read_text()}\n[registrar]\nrefresh = {refresh}\n")
        self.cli(
            "registrar",
            "init",
            "--dir",
            str(agency.dir),
            "--home-key-file",
            str(self.key),
            "--key-file",
            str(agency.key),
        )

    def serve_args(self) -> list[str]:
        return ["registrar", "serve", "--key-file", str(self.key)]

    def code(self, endpoint: str, unit: str = "Unit U") -> str:
        """``registrar code``: a one-time enrolment code from the running registrar."""
        return str(self.json("registrar", "code", "--name", endpoint, "--unit", unit)["code"])

    def enrol(self, endpoint: Endpoint, name: str, seconds: float = 120.0) -> dict[str, Any]:
        """``trust enrol`` on ``endpoint`` with a fresh code, given again while the
        registrar's descriptor does not let the code's key in yet."""
        code = self.code(name)
        deadline = time.monotonic() + seconds
        while True:
            result = endpoint.cli("trust", "enrol", code, "--json", check=False)
            if result.returncode == 0:
                return dict(json.loads(result.stdout))
            if _NOT_YET not in result.stderr or time.monotonic() >= deadline:
                raise EndpointError(
                    f"{endpoint.name}: onionpost trust enrol exited with {result.returncode}: "
                    f"{result.stderr.strip()}"
                )
            time.sleep(1.0)
