"""Video I/O: the only package that imports PyAV (decode, HDR10 encode, HDR10 metadata, frame buffers)."""
