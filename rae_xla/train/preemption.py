"""SIGTERM (TPU VM preemption, `launch/tpu_vm.sh stop`, a scheduler) -> finish the step, checkpoint, exit 0."""
from __future__ import annotations

import signal
import threading

from absl import logging


class PreemptionWatcher:
    """Records SIGTERM instead of dying; the training loop polls `requested` once per step.

    Only the main thread can install signal handlers; elsewhere (a test calling the trainer from a worker
    thread) the watcher is inert and SIGTERM keeps its default meaning.
    """

    def __init__(self):
        self._event = threading.Event()
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del frame
        logging.warning("Received signal %d: saving a checkpoint after this step, then exiting.", signum)
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
