"""`python -m api.serve`: the API as it runs everywhere (the container, `make run`, the benchmark).

It prepares prometheus-client's multiprocess directory, then runs uvicorn with the production
options (`--factory api.app:create_app`, `WORKERS` processes, no uvicorn access log: the app
writes its own, no proxy headers: `TRUSTED_PROXIES` decides, logging in LOG_FORMAT).

prometheus-client chooses between one process's registry and the multiprocess mode when it is
first imported, by `PROMETHEUS_MULTIPROC_DIR`; so the directory is set here, before anything
imports it, and uvicorn's processes inherit it. It is per start and empty at start: samples of an
earlier run (other process ids) would otherwise be added to this run's for ever, and its live
gauges would never go. `PROMETHEUS_MULTIPROC_DIR` may name the directory (a tmpfs in a
container; its `*.db` files are deleted at start); unset, a fresh temporary one is made and
removed at exit.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile

from shared.observability import uvicorn_log_config
from shared.settings import load_settings_or_report

__all__ = ["main", "prepare_multiprocess_dir"]

#: uvicorn closes connections still open (long-polls) after this many seconds of a shutdown.
GRACEFUL_SHUTDOWN = 5


def prepare_multiprocess_dir() -> tuple[str, bool]:
    """The directory every API process of this start writes its samples to (set in the environment),
    and whether it was made here (and so is removed at exit)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    made = not path
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="tripcheck-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path, made


def main(argv: list[str] | None = None) -> int:
    settings = load_settings_or_report()
    if settings is None:
        return 2
    parser = argparse.ArgumentParser(prog="python -m api.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to bind (HOST)")
    parser.add_argument("--port", type=int, default=settings.api.port, help="port to bind (PORT)")
    parser.add_argument("--workers", type=int, default=settings.api.workers, help="API processes (WORKERS)")
    args = parser.parse_args(argv)
    # Nothing imported so far may have imported prometheus-client: it would have chosen its mode.
    assert "prometheus_client" not in sys.modules, "prometheus_client imported before its directory was set"
    directory, made = prepare_multiprocess_dir()
    import uvicorn  # noqa: PLC0415 - after the directory is set, like everything the app imports

    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=uvicorn_log_config(settings),
            log_level=settings.app.log_level.lower(),
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
    finally:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
