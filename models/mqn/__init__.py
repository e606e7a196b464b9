"""MQN: Mixed Quantization Network for SDR -> HDR (Borrego-Carazo et al., BMVC 2021), trained here.

Only :mod:`models.mqn.convention`, :mod:`models.mqn.data` and :mod:`models.mqn.metrics` are NumPy-only;
everything else needs TensorFlow (``pip install itmstream[train]``).
"""
