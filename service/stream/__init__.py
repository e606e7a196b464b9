"""The WebSocket frame stream: protocol, per-connection session, and the PQ output packers."""
