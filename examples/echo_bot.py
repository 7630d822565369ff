"""echo_bot: answer every incoming text with "echo: <body>" and mark it read.

A small program on the client library (``onionpost.client``): it connects to
the running daemon of an endpoint, follows incoming messages as they arrive,
replies to each text to its sender and marks it read (the sender then sees
its message as ``read``). Files are left alone.

    .venv/bin/python examples/echo_bot.py --home /path/to/home

Bounds: a reply is cut to the protocol's largest text (``MAX_TEXT_BODY``
bytes); a text that is itself an echo is marked read but not answered, so
two bots never echo each other forever; each request to the daemon has a
deadline; ``--max N`` stops after N replies. Only messages that arrive while
the bot runs are answered (``file_drop.py`` shows how to catch up on the
inbox after a restart).

Exit status, as the ``onionpost`` command's: 0 when stopped (Ctrl-C,
SIGTERM or ``--max``), 3 when the daemon is not running, goes away or stops answering.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import outcome
import trio
from outcome import Outcome

from onionpost.client import ApiError, Client, Message, open_client
from onionpost.errors import DaemonNotRunningError, TransportError
from onionpost.home import Paths, default_home
from onionpost.limits import MAX_TEXT_BODY

PREFIX: Final = "echo: "
# Seconds the daemon has to answer one request (a healthy daemon answers at once).
CALL_DEADLINE: Final = 30.0
EXIT_OK: Final = 0
EXIT_ENVIRONMENT: Final = 3


def say(text: str) -> None:
    print(f"echo_bot: {text}", file=sys.stderr, flush=True)


def reply_to(body: str) -> str | None:
    """The reply to ``body``: "echo: <body>", cut to fit; None when it is an echo."""
    if body.startswith(PREFIX):
        return None
    reply = (PREFIX + body).encode("utf-8")[:MAX_TEXT_BODY]
    return reply.decode("utf-8", errors="ignore")  # a cut may split a character


async def answer(client: Client, message: Message) -> bool:
    """Reply to one incoming text and mark it read; True if a reply was queued."""
    assert message.body is not None
    reply = reply_to(message.body)
    try:
        with trio.fail_after(CALL_DEADLINE):
            if reply is not None:
                # The reply carries the label its text came with: an echo of a
                # TLP:RED text is TLP:RED, never the default.
                await client.send_text(message.contact, reply, label=message.label or None)
            await client.mark_read([message.id])
    except ApiError as exc:
        # Refused, e.g. the sender was removed meanwhile: skip this one.
        say(f"could not answer {message.id}: {exc} ({exc.code})")
        return False
    return reply is not None


@dataclass
class Tally:
    replies: int = 0


async def run(home: Path | None, max_replies: int | None = None, tally: Tally | None = None) -> int:
    """Echo texts until cancelled or ``max_replies`` were sent; returns how many
    (counted in ``tally`` as they go, for a run that is cancelled)."""
    tally = Tally() if tally is None else tally
    async with open_client(home) as client:
        say(f"answering texts on {client.socket_path} (Ctrl-C stops)")
        async for message in client.messages():
            if message.direction != "in" or message.kind != "text" or message.body is None:
                continue
            if await answer(client, message):
                tally.replies += 1
            if max_replies is not None and tally.replies >= max_replies:
                break
    return tally.replies


async def until_stopped(fn: Callable[[], Awaitable[object]]) -> bool:
    """Run ``fn()`` until it returns (True) or Ctrl-C or a SIGTERM (systemd's
    stop, ``kill``) cancels it (False); what it raises goes up as it is."""
    ended: list[Outcome[object]] = []

    async def body() -> None:
        ended.append(await outcome.acapture(fn))
        nursery.cancel_scope.cancel()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return False
    ended[0].unwrap()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Answer every incoming text with 'echo: '.")
    parser.add_argument(
        "--home",
        type=Path,
        help="the endpoint's home (default: $ONIONPOST_HOME, else the per-user data dir)",
    )
    parser.add_argument("--max", type=int, metavar="N", help="stop after N replies")
    args = parser.parse_args(argv)
    socket = Paths.for_home(args.home or default_home()).socket
    tally = Tally()
    try:
        trio.run(until_stopped, partial(run, args.home, args.max, tally))
    except KeyboardInterrupt:
        return EXIT_OK
    except DaemonNotRunningError:
        say(f"no daemon is listening on {socket}: start 'onionpost daemon' for this home")
        return EXIT_ENVIRONMENT
    except TransportError as exc:
        say(f"lost the daemon: {exc}. Run the bot again once the daemon is back.")
        return EXIT_ENVIRONMENT
    except trio.TooSlowError:
        say(f"the daemon did not answer within {CALL_DEADLINE:g} s")
        return EXIT_ENVIRONMENT
    say(f"stopped after {tally.replies} replies")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
