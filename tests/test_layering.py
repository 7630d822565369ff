"""The shape of the code (README "The code", STYLE.md), checked on every import in src/.

::

    cli ──► client ──(local control socket)──► daemon ──┐
     │                                                   ├──► host ──► tor (stem, SOCKS)
     └────────────────────────────────────────► mailbox ─┘      ├───► transport ──► proto
                                      daemon, mailbox ──► store (SQLite)
                                home: paths, sealed secrets, cards, config
    api, _localapi: the local API's records and framing (client and host)
    testing: a private Tor network and endpoints on it, the pipeline in memory,
             a local API double (tests, demo, bench, fuzz); imported by no part

Each package (and each top-level module) may import only the parts of
onionpost that :data:`MAY_IMPORT` lists for it, so data flows one way through
that picture; and each hazardous dependency is imported in one place only
(:data:`ONLY_IN`). No module imports another part's private (``_underscore``)
module: a part is used through its ``__init__``. The mailbox never imports
the daemon. Imports are read from the source with :mod:`ast`, so those
inside functions and under ``TYPE_CHECKING`` count too. A failure names
every offending import with its file and line.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "onionpost"

# Small modules any layer may use: each imports nothing of ours but errors or limits.
LEAVES = frozenset({"errors", "limits", "names", "_files", "_logs"})

#: What the store may take from the protocol core (module, or name in its __init__).
STORE_PROTO = frozenset(
    {
        "proto.address",
        "proto.pack",
        "proto.unpack",
        "proto.NotMsgpack",
        # The evidence log's entries, tree and checkpoints (evidence.md).
        "proto.evidence",
        "proto.merkle",
        "proto.note",
        # Trust anchors, stored as their canonical encoding (trust.md).
        "proto.trust",
        # A group's log, rebuilt from its stored operations (groups.md).
        "proto.groups",
    }
)

#: What each part of the package may import, besides itself. A part is a
#: subpackage or a top-level module ("__init__" is the package's own).
#: An entry with a dot allows only that module of a part ("store._crypto").
MAY_IMPORT: dict[str, frozenset[str]] = {
    "__init__": frozenset({"errors"}),
    "__main__": frozenset({"cli"}),
    "errors": frozenset(),
    "limits": frozenset(),
    "names": frozenset({"errors", "limits"}),
    "_files": frozenset({"errors"}),
    "_logs": frozenset(),
    # The local API's wire format and shapes: the client depends on them, so
    # they import nothing heavier than errors.
    "_localapi": frozenset({"errors", "limits"}),
    "api": frozenset({"errors"}),
    # The protocol core: nothing of ours but errors, limits and names.
    "proto": frozenset({"errors", "limits", "names"}),
    "transport": frozenset({"proto"}) | LEAVES,
    "tor": frozenset({"proto"}) | LEAVES,
    # The store knows rows, not the wire: of the protocol core only addresses
    # and the one msgpack codec (its sealed row contents, the mailbox's files).
    "store": STORE_PROTO | LEAVES,
    # The secrets file is sealed with the store's at-rest primitives.
    "home": frozenset({"proto", "store.at_rest"}) | LEAVES,
    "client": frozenset({"_localapi", "api", "home", "__init__"}) | LEAVES,
    # What an endpoint daemon and a mailbox both stand on: tor, the onion
    # service's listener, the local API server, supervision, the start-up.
    "host": frozenset({"_localapi", "api", "transport", "tor", "home", "proto", "__init__"})
    | LEAVES,
    "daemon": frozenset(
        {"_localapi", "api", "transport", "tor", "store", "home", "proto", "host", "__init__"}
    )
    | LEAVES,
    # A home run as a mailbox: its own server and store, on the host; never
    # the daemon (what both need is in host).
    "mailbox": frozenset(
        {"_localapi", "api", "transport", "tor", "store", "home", "proto", "host", "__init__"}
    )
    | LEAVES,
    # A home run as an agency's registrar (trust.md §8), as a mailbox is.
    "registrar": frozenset(
        {"_localapi", "api", "transport", "tor", "store", "home", "proto", "host", "__init__"}
    )
    | LEAVES,
    "cli": frozenset({"client", "home", "proto", "api", "__init__"}) | LEAVES,
    # Test support, above everything it drives: the private Tor network and
    # endpoints on it driven as an operator drives them (the CLI in a child
    # process, the client library); the real pipeline in memory (daemons and
    # mailboxes on their public seams); a double of the daemon's local API.
    "testing": frozenset(
        {
            "tor",
            "client",
            "daemon",
            "mailbox",
            "registrar",
            "host",
            "transport",
            "store",
            "home",
            "proto",
            "api",
        }
    )
    | LEAVES,
}

#: Single modules that may import more than their part (path under src/onionpost).
MODULE_MAY_IMPORT: dict[str, frozenset[str]] = {
    # `onionpost daemon` runs the daemon in this process; `doctor` opens the
    # store and asks the running tor (its version, its hardening, its sockets).
    "cli/_daemon_cmd.py": frozenset({"daemon", "host", "store", "tor"}),
    # `onionpost mailbox serve` runs the mailbox in this process.
    "cli/_mailbox_cmd.py": frozenset({"host", "mailbox", "store"}),
    # `onionpost registrar init|serve` makes and runs the registrar in this process.
    "cli/_registrar_cmd.py": frozenset({"host", "registrar"}),
    # The secret source both of those give the host's start-up.
    "cli/_common.py": frozenset({"host"}),
    # `onionpost testnet up|status|down`.
    "cli/_testnet.py": frozenset({"testing"}),
}

#: Third-party modules that only these files may import.
ONLY_IN: dict[str, frozenset[str]] = {
    # The hazardous layers: one for the wire (proto._crypto), one for data at rest.
    "nacl": frozenset({"proto/_crypto.py", "store/_crypto.py"}),
    # The same two, and the self-test's RFC 8439 known answer, which needs the
    # provider's AEAD with the RFC's own nonce (not of Noise's form).
    "cryptography": frozenset({"proto/_crypto.py", "store/_crypto.py", "proto/selftest.py"}),
    # One strict decoder, whose errors are caught there only.
    "msgpack": frozenset({"proto/_msgpack.py"}),
    # stem and its threads stay behind the trio bridge.
    "stem": frozenset({"tor/_controller.py"}),
    # The passphrase strength estimate, for init only.
    "zxcvbn": frozenset({"home/_passphrase.py"}),
}

#: Nothing outside the store opens the database (SQLite, or SQLCipher's binding of it).
ONLY_UNDER: dict[str, str] = {"sqlite3": "store", "sqlcipher3": "store"}

# The protocol core does no I/O: not even these standard modules.
IO_MODULES = frozenset(
    {"trio", "stem", "socket", "asyncio", "subprocess", "sqlite3", "time", "os.path", "threading"}
)


def _imports(path: Path) -> tuple[tuple[str, int], ...]:
    """(name, line) for every absolute import in ``path``; ``from a import b`` gives a.b."""
    return _parsed_imports(path, path.stat().st_mtime_ns)


@functools.cache
def _parsed_imports(path: Path, _mtime: int) -> tuple[tuple[str, int], ...]:
    return tuple(_walk_imports(ast.parse(path.read_text(), str(path))))


def _walk_imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = node.module if alias.name == "*" else f"{node.module}.{alias.name}"
                yield name, node.lineno


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def _part(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _part_of(module: str) -> str:
    """The part of onionpost that ``module`` (``onionpost.<part>...``) is in."""
    parts = module.split(".")
    if len(parts) > 1 and ((SRC / parts[1]).is_dir() or (SRC / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "__init__"  # `from onionpost import __version__`: the package's own __init__


def _allows(allowed: frozenset[str], module: str, part: str) -> bool:
    dotted = ".".join(module.split(".")[1:3])
    return part in allowed or dotted in allowed


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(SRC))


def layering_violations(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        own = _part(path)
        allowed = MAY_IMPORT.get(own)
        if allowed is None:
            found.append(f"{_name(path)}: part {own!r} is not in MAY_IMPORT; place it")
            continue
        allowed |= MODULE_MAY_IMPORT.get(_name(path), frozenset())
        for module, line in _imports(path):
            if _top(module) != "onionpost":
                continue
            part = _part_of(module)
            if part == own or _allows(allowed, module, part):
                continue
            found.append(
                f"{_name(path)}:{line} imports {module}: {own} may import only "
                f"{', '.join(sorted(allowed)) or 'nothing of onionpost'}"
            )
    return found


def dependency_violations(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for module, line in _imports(path):
            top = _top(module)
            if top in ONLY_IN and _name(path) not in ONLY_IN[top]:
                found.append(
                    f"{_name(path)}:{line} imports {module}: only "
                    f"{', '.join(sorted(ONLY_IN[top]))} may"
                )
            if top in ONLY_UNDER and _part(path) != ONLY_UNDER[top]:
                found.append(
                    f"{_name(path)}:{line} imports {module}: only onionpost.{ONLY_UNDER[top]} may"
                )
    return sorted(set(found))


def private_violations(paths: list[Path]) -> list[str]:
    """Imports of another part's private module (``onionpost.<part>._<module>``,
    or ``from onionpost.<part> import _<module>``)."""
    found = []
    for path in paths:
        own = _part(path)
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[0] != "onionpost" or len(parts) < 3 or _part_of(module) in (own, "__init__"):
                continue
            if parts[2].startswith("_") and not parts[2].startswith("__"):
                found.append(
                    f"{_name(path)}:{line} imports {module}: {parts[1]}.{parts[2]} is private "
                    f"to {parts[1]}; import it through onionpost.{parts[1]}"
                )
    return found


def _fail_on(found: list[str]) -> None:
    if found:
        pytest.fail("\n".join(["the layering is broken:", *found]), pytrace=False)


def test_each_part_imports_only_what_the_picture_allows() -> None:
    _fail_on(layering_violations(_sources()))


def test_no_part_imports_another_parts_private_module() -> None:
    _fail_on(private_violations(_sources()))


def test_the_store_imports_proto_only_for_addresses_and_the_codec() -> None:
    # The wire records (proto.messages) are the delivery engine's to make.
    assert MAY_IMPORT["store"] - LEAVES == STORE_PROTO
    store = [path for path in _sources() if _part(path) == "store"]
    taken = {".".join(m.split(".")[1:3]) for p in store for m, _ in _imports(p)}
    assert {t for t in taken if t.startswith("proto")} <= STORE_PROTO


def test_the_mailbox_never_imports_the_daemon() -> None:
    # They share what both need through host, one floor below them.
    assert "daemon" not in MAY_IMPORT["mailbox"]
    assert not MAY_IMPORT["host"] & {"daemon", "mailbox", "store", "cli", "client", "testing"}
    _fail_on(
        [
            f"{_name(path)}:{line} imports {module}: the mailbox never imports the daemon"
            for path in sorted((SRC / "mailbox").rglob("*.py"))
            for module, line in _imports(path)
            if _top(module) == "onionpost" and _part_of(module) == "daemon"
        ]
    )


def test_hazardous_dependencies_are_imported_in_one_place() -> None:
    _fail_on(dependency_violations(_sources()))


def test_protocol_core_imports_no_io() -> None:
    _fail_on(
        [
            f"{_name(path)}:{line} imports {module}: the protocol core does no I/O"
            for path in sorted((SRC / "proto").rglob("*.py"))
            for module, line in _imports(path)
            if module in IO_MODULES or _top(module) in IO_MODULES
        ]
    )


def test_no_module_imports_itself_back() -> None:
    """No import cycles between modules (home._card and home._secrets had one)."""
    modules = {
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in _sources()
    }

    def module_of(name: str) -> str:
        # "onionpost.home.Paths" is a name in the module onionpost.home.
        return name if name in modules else name.rpartition(".")[0]

    graph = {
        name: {module_of(m) for m, _ in _imports(path) if module_of(m) in modules} - {name}
        for name, path in modules.items()
    }
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:  # bounded: each module is expanded once per start
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    _fail_on(sorted(set(cycles)))


def test_every_import_is_absolute() -> None:
    # The checks above read absolute imports only.
    relative = [
        f"{_name(path)}:{node.lineno}"
        for path in _sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == []


def test_the_rules_say_what_the_readme_says() -> None:
    assert MAY_IMPORT["proto"] == {"errors", "limits", "names"}
    assert not MAY_IMPORT["client"] & {"daemon", "store", "tor", "transport", "testing"}
    for lower in ("proto", "transport", "tor", "store"):
        assert not MAY_IMPORT[lower] & {"cli", "client", "daemon", "home", "testing"}
    # Only the testnet command reaches the test support.
    users = [part for part, allowed in MAY_IMPORT.items() if "testing" in allowed]
    assert users == []
    assert set(MAY_IMPORT) >= {_part(path) for path in _sources()}


def test_the_checkers_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against checks that can never fail: plant offenders and see them named.
    (tmp_path / "client").mkdir()
    module = tmp_path / "client" / "_bad.py"
    module.write_text(
        "import msgpack\nfrom onionpost.daemon._daemon import Daemon\n"
        "def f():\n    from nacl import bindings\n    import sqlite3\n"
        "from onionpost.home import _paths\nfrom onionpost.client._types import Event\n"
        "from onionpost.home import __version__\n"
    )
    (tmp_path / "mailbox").mkdir()
    reaching = tmp_path / "mailbox" / "_bad.py"
    reaching.write_text("from onionpost.daemon import Daemon\n")
    for part in ("daemon", "home"):
        (tmp_path / part).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    layering = layering_violations([module])
    dependencies = dependency_violations([module])
    private = private_violations([module])
    mailbox_layering = layering_violations([reaching])
    monkeypatch.undo()
    assert private == [
        "client/_bad.py:2 imports onionpost.daemon._daemon.Daemon: daemon._daemon is private "
        "to daemon; import it through onionpost.daemon",
        "client/_bad.py:6 imports onionpost.home._paths: home._paths is private "
        "to home; import it through onionpost.home",
    ]
    assert mailbox_layering == [
        "mailbox/_bad.py:1 imports onionpost.daemon.Daemon: mailbox may import only "
        "__init__, _files, _localapi, _logs, api, errors, home, host, limits, names, proto, "
        "store, tor, transport"
    ]
    assert layering == [
        "client/_bad.py:2 imports onionpost.daemon._daemon.Daemon: client may import only "
        "__init__, _files, _localapi, _logs, api, errors, home, limits, names"
    ]
    assert dependencies == [
        "client/_bad.py:1 imports msgpack: only proto/_msgpack.py may",
        "client/_bad.py:4 imports nacl.bindings: only proto/_crypto.py, store/_crypto.py may",
        "client/_bad.py:5 imports sqlite3: only onionpost.store may",
    ]
    assert any(_top(m) == "nacl" for m, _ in _imports(SRC / "proto" / "_crypto.py"))
