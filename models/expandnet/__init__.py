"""ExpandNet (Marnerides et al., Eurographics 2018) for SDR -> HDR, trained here in the MQN harness.

Only :mod:`models.expandnet.artifacts` is NumPy-only; everything else needs TensorFlow
(``pip install itmstream[train]``).
"""
