"""onionpost: secure messaging between agency endpoints over Tor onion services.

The packages, in the order data flows (see the README for the picture):

- :mod:`onionpost.proto` - the sans-I/O protocol core (Noise, framing, messages, session).
- :mod:`onionpost.transport` - trio adapters that run the core over streams.
- :mod:`onionpost.tor` - the only place that talks to tor (stem, SOCKS).
- :mod:`onionpost.errors` - the one exception tree.
"""

from __future__ import annotations

from onionpost.errors import OnionpostError

# The one place the version is written: pyproject.toml reads it from here
# (setuptools' dynamic version), and so does `onionpost --version`.
__version__ = "0.1.0"

__all__ = ["OnionpostError", "__version__"]
