"""Worker threads that a stopping daemon can walk away from.

`concurrent.futures.ThreadPoolExecutor` joins its threads at interpreter exit, so a 300-page PDF
being read when the second SIGTERM arrives would hold the exit for its whole duration. These
threads are daemon threads: `shutdown` cancels what has not started and returns at once; a task
still running is abandoned (its file is claimed again at the next start).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future


class Workers:
    def __init__(self, count: int, name: str = "prepare"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(max(1, count))]
        for t in self._threads:
            t.start()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._tasks.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Cancel queued tasks, let running ones finish (or be abandoned at exit); never waits."""
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while (item := self._tasks.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the loop, which turns it into a failed row
                future.set_exception(exc)
