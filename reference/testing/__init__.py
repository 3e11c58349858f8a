"""Tools users import in their own tests, apart from the runtime that trains and evaluates.

- :mod:`.strategies`: hypothesis strategies for valid samples and samples breaking one chosen rule (the only
  module here that needs hypothesis, a test extra);
- :mod:`.pytest_plugin`: ``pytest --dataset``, ``pytest --snapshot`` and ``pytest --gate`` (the ``pytest11``
  entry point; imports torch only when one of its options is given); the snapshots themselves are
  :mod:`reference.app.snapshot` (also behind ``tvref snapshot``);
- :mod:`.golden`: the suite's golden records of the models (``python -m reference.testing.golden``);
- :mod:`.synthetic`: the generator of small datasets in the PennFudan, LabelMe and COCO layouts
  (``python -m reference.testing.synthetic``).

Nothing is imported here, so that importing one tool imports only what that tool needs.
"""
