import shutil
import tempfile

import pytest

from embodia.serve.fleet.postgres import LocalPostgres


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (the project installs the binaries). Its folder
    is outside pytest's root-only tmp tree: under root the server runs as `postgres`."""
    root = tempfile.mkdtemp(prefix="embodia-pg-")
    try:
        with LocalPostgres(root) as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)
