"""HTTP and WebSocket surface of the service: the only package that knows about HTTP."""
