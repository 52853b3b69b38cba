"""The crystal tasks (the counterpart of :mod:`crystalflow.proteins`).

Flows and their training:

- :mod:`~crystalflow.crystal_tasks.csp` -- the P1 CSP flow (composition -> structure, no symmetry);
- :mod:`~crystalflow.crystal_tasks.sgcsp` -- the space-group-conditioned CSP flow (Wyckoff template given);
- :mod:`~crystalflow.crystal_tasks.dng` -- de-novo generation (skeleton, atom types, positions, lattice);
- :mod:`~crystalflow.crystal_tasks.training` -- what the three bring to the one training entry
  (:mod:`crystalflow.task_training`); :mod:`~crystalflow.crystal_tasks.validation` -- their
  validators; :mod:`~crystalflow.crystal_tasks.stats` -- typed data statistics of their checkpoints.

What users call:

- :mod:`~crystalflow.crystal_tasks.prediction` -- ``crystalflow.predict`` / ``predict_from_csv``;
  :mod:`~crystalflow.crystal_tasks.pipeline` -- composition -> ranked structures (templates, flows,
  CHGNet); :mod:`~crystalflow.crystal_tasks.candidates` -- candidates and their ranking;
  :mod:`~crystalflow.crystal_tasks.wyckoff_requests` -- composition + space group -> Wyckoff
  templates; :mod:`~crystalflow.crystal_tasks.composition` -- formula parsing and checks;
- :mod:`~crystalflow.crystal_tasks.generation` -- ``crystalflow.generate``;
  :mod:`~crystalflow.crystal_tasks.steering` -- best-of-N and SMC steering;
  :mod:`~crystalflow.crystal_tasks.rewards` -- rewards; :mod:`~crystalflow.crystal_tasks.steered_generation`
  -- the ``generate --steer`` / ``--relax`` glue.

Submodules are imported on use (``import crystalflow.crystal_tasks`` is cheap).
"""
