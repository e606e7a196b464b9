"""Learned ITM models: training (TensorFlow, optional ``train`` extra) and exported LiteRT artefacts."""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 class features; without them
# (the AMD EPYC machines here) Eigen serves the convolutions and has no gradient for dilated ones, which
# ExpandNet's dilated branch needs. Set before anything imports TensorFlow (``tests/conftest.py`` imports
# this package first for the same reason).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
