"""meshpilot: a service mesh that runs on one machine, and the practices of running one in production."""

__version__ = "0.1.0"
