"""The browser demo served at ``/``: static files plus the router that serves them."""
