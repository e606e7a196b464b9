"""One module per resource, each exporting ``router``."""
