"""What every learned operator is trained, exported and evaluated with, so their numbers compare.

The data (scenes, split, SDR synthesis) and the absolute convention are MQN's and are imported from
:mod:`models.mqn` as they are; the generic pieces that still live in :mod:`models.mqn.train` (``TrainConfig``,
the prefetch thread, the checkpointing) are imported from there too, until they move here. What is new and
shared sits in this package: the training loop (:mod:`models.harness.loop`) and the ``--model`` dispatch of
the top-level entry points (:mod:`models.harness.cli`).
"""
