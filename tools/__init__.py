"""Developer tools that write files of the repository; not part of the installed package.

Run from the repository's root:

- ``python -m tools.vectorgen protocol-spec/vectors`` (``make vectors``): the
  protocol test vectors;
- ``python -m tools.specgen protocol-spec/state-machine.md`` (``--check`` to
  verify): the session state-machine document.

They import :mod:`onionpost` and do the file I/O that its protocol core must
not do.
"""
