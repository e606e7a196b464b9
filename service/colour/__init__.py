"""Colour science for SDR -> HDR10: transfer functions, primaries, Y'CbCr, and the fused pixel kernels.

Everything here is pure NumPy (plus Numba for the hot kernels): no I/O, no logging, no mutable globals.
The one scale convention lives in :mod:`service.colour.scaling`.
"""
