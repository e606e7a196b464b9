"""itmstream: real-time inverse tone mapping of SDR video and game frames to HDR10."""
