"""Wire protocol between the control plane and the proxies (see ``types`` and ``stream``)."""
