"""Local region maps on a ConvLSTM (Oh, Shin and Hong, CMC 2022) for SDR -> HDR, trained in the MQN harness.

Only :mod:`models.region_lstm.artifacts` needs no TensorFlow; everything else needs it
(``pip install itmstream[train]``).
"""
