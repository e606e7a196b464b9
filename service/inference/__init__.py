"""Inference runtime: the LiteRT engine (:mod:`.engine`), the dynamic batcher and the worker pool."""
