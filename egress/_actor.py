"""The Ray actor a recording runs in: one process per recording, so that a crash or a stuck
decoder ends that recording only. Its methods are async (the actor runs an event loop, which
the room client needs): ``record`` runs the whole recording and returns its ``Result``,
``progress`` and ``stop`` are answered meanwhile."""

from __future__ import annotations

import logging
import sys
from typing import Any

import ray

from ._spec import Progress, RecordingSpec, Result


@ray.remote(max_restarts=0, max_task_retries=0)
class RecorderActor:
    def __init__(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aioice").setLevel(logging.WARNING)
        # The compositor thread shares the GIL with the event loop and one decoder thread per
        # track; a shorter switch interval keeps it from waiting 5 ms each time it wants it back.
        sys.setswitchinterval(0.001)
        self._recorder: Any = None
        self._stopped = False  # a stop that came before the recording started

    async def record(self, spec: RecordingSpec) -> Result:
        from ._recorder import Recorder
        from ._track_recorder import TrackRecorder

        recorder = TrackRecorder(spec) if spec.track_sid else Recorder(spec)
        self._recorder = recorder
        if self._stopped:
            recorder.stop()
        return await recorder.run()

    async def progress(self) -> Progress:
        if self._recorder is not None:
            return self._recorder.progress()  # type: ignore[no-any-return]
        return Progress(phase="joining")

    async def stop(self) -> None:
        self._stopped = True
        if self._recorder is not None:
            self._recorder.stop()

    def pid(self) -> int:
        import os

        return os.getpid()
