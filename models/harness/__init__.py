"""What every learned operator is trained, exported and evaluated with, so their numbers compare.

The data (scenes, split, SDR synthesis) and the absolute convention are MQN's and are imported from
:mod:`models.mqn` as they are. What is shared sits in this package: the run's settings
(:mod:`models.harness.config`), the training loop with its checkpoints, logs and validation metrics
(:mod:`models.harness.loop`), the evaluation cases and scores (:mod:`models.harness.evaluation`) and their
table files (:mod:`models.harness.results`), and the ``--model`` dispatch and shared options of the
top-level entry points (:mod:`models.harness.cli`).
"""
