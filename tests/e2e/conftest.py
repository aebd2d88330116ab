"""The ``mesh`` fixture: one real local cluster with the mesh installed, shared by every end-to-end test.

The cluster is what a user gets from ``meshpilot cluster up`` + ``meshpilot install`` + the
packaged sample apps with both namespaces labelled ``istio-injection=enabled`` (see e2e_mesh.py).
It costs seconds on two cores, so it has session scope; each test removes the objects it applied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from _clusterhandle import meshpilot_home
from e2e_mesh import Mesh, ready, sample_objects, wait_for


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    from meshpilot.cli.mesh import install_into
    from meshpilot.client import Client
    from meshpilot.cluster import lifecycle

    home = tmp_path_factory.mktemp("meshpilot-e2e")
    with meshpilot_home(home):
        info, _ = lifecycle.up("e2e", mesh=True)
    client = Client(info.server, info.token)
    local = Mesh(name="e2e", home=home, info=info, client=client)
    try:
        install_into(client, cluster_id=info.name)
        client.apply(sample_objects())
        wait_for("the mesh and the sample apps to be ready and SYNCED", lambda: ready(local), timeout=90)
        yield local
    finally:
        with contextlib.suppress(Exception):
            local.http.close()
        with contextlib.suppress(Exception):
            client.close()
        with meshpilot_home(home):
            lifecycle.down("e2e")
