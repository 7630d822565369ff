"""Log lines that cannot be forged, and that do not hold the contact graph.

Theory of operation
-------------------
onionpost's log lines are ``event=<name> key=value ...``; a log pipeline
splits them on spaces and ``=``. Text that came from a peer (a contact's
display name on its card, a file name, a reason in a Close) or from the
operator (a contact's local name) may hold spaces, ``=``, quotes, newlines
or terminal escapes, and so could forge fields or whole lines. Every log
call that interpolates such text passes it through :func:`safe`: a value of
only ``[A-Za-z0-9._:/@#+-]`` stays as it is; anything else becomes a JSON
string literal (quoted, with every quote, backslash, control and non-ASCII
character escaped), cut to :data:`MAX_LOGGED_TEXT` characters::

    event=contact_added contact=#3
    event=file_refused name="report \\"final\\".pdf\\nevent=forged"

*The contact graph stays out of the journal.* At INFO and above, a contact
is named by its local handle, the store's id (:func:`contact_ref`:
``contact=#3``), never by its name or onion address: a journal shipped to a
log host then does not say whom the agency talks to. Addresses and names
appear only at DEBUG, which an operator turns on to investigate.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["MAX_LOGGED_TEXT", "contact_ref", "safe"]

#: Characters of peer- or user-provided text kept in one log field.
MAX_LOGGED_TEXT: Final = 80

_PLAIN: Final = re.compile(r"[A-Za-z0-9._:/@#+\-]{1,80}")


def safe(value: object) -> str:
    """``value`` as one log field's value that cannot break out of its field."""
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    if len(text) > MAX_LOGGED_TEXT:
        text = text[:MAX_LOGGED_TEXT] + "..."
    return json.dumps(text, ensure_ascii=True)


def contact_ref(contact_id: int) -> str:
    """A contact's handle in logs at INFO and above: ``#<store id>``."""
    return f"#{int(contact_id)}"
