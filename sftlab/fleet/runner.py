"""Run a fleet on its own event loop in a background thread, for synchronous callers (tests, Fabric code).

The fleet is asyncio; Fabric and pytest are not. `LabRunner.start()` returns only once the fleet is ready
(every listener bound, client files written) or raises what stopped it; `call()` runs a coroutine on the
fleet's loop, which is how a test changes a knob or restarts a tunnel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sftlab.fleet.compose import start_fleet
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.running import Fleet
from sftlab.fleet.spec import LabSpec

T = TypeVar("T")


class LabRunner:
    def __init__(self, spec: LabSpec, directory: Path, *, keys: KeyPool | None = None) -> None:
        self._spec = spec
        self._directory = directory
        self._keys = keys
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftrenew-lab", daemon=True)
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            raise RuntimeError("the lab is not running; call start() first")
        return self._fleet

    def start(self, timeout: float = 120.0) -> Fleet:
        self._thread.start()
        self._fleet = self.call(start_fleet(self._spec, self._directory, keys=self._keys), timeout=timeout)
        return self._fleet

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 120.0) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        if self._fleet is not None:
            self.call(self._fleet.stop())
            self._fleet = None
        if self._thread.is_alive():
            self.call(_cancel_leftovers())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _cancel_leftovers() -> None:
    """Cancel what sessions left behind (a pump, a reader) so the loop closes with nothing pending."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
