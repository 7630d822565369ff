"""Coverage-guided fuzzing of what a peer can send us, with atheris (``make fuzz``).

- :mod:`fuzz.targets`: the targets and the contract each checks;
- ``python -m fuzz`` (:mod:`fuzz.__main__`): runs them under libFuzzer;
- :mod:`fuzz.seeds`: the seed corpus, ``fuzz/corpus/<target>/``, made from
  real objects;
- ``fuzz/regressions/<target>/``: inputs that once crashed a target, each
  replayed by ``tests/test_fuzz.py`` with the seeds.

Nothing here is imported by onionpost; this package only needs to sit at
the top of the repository (``python -m fuzz`` from there).
"""
