"""SingleHDR (Liu et al., CVPR 2020) for SDR -> HDR, trained here in the MQN harness.

Only :mod:`models.singlehdr.basis` and :mod:`models.singlehdr.artifacts` need no TensorFlow;
everything else needs it (``pip install itmstream[train]``).
"""
