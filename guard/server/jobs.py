"""Long work (protect, sign) runs as jobs: a bounded queue in front of a few worker threads.

A job has an unguessable ID; its state, progress and finished result live on the server, so a
browser tab that was closed finds its results again. A full queue refuses new work at once
(QueueFull -> 503 with Retry-After) instead of piling up uploads until memory runs out.
Finished jobs and their files are dropped after `ttl` seconds, and beyond the `keep` most
recent ones.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.server.errors import client_message

log = logging.getLogger("guard.server")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class QueueFull(Exception):
    pass


@dataclass
class Job:
    kind: str  # 'protect' | 'sign'
    name: str  # the uploaded file's safe name
    folder: Path  # private: never in a response
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    state: str = QUEUED
    stage: str = "waiting"
    done: int = 0
    total: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    input: Path | None = None
    output: Path | None = None
    output_name: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total, self.stage = done, total, "working"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "stage": self.stage,
            "progress": {"done": self.done, "total": self.total},
            "error": self.error,
            "result": self.result,
            "download": f"/api/jobs/{self.id}/result" if self.state == DONE else None,
        }


Work = Callable[[Job], None]


class JobQueue:
    def __init__(
        self,
        *,
        workers: int,
        size: int,
        ttl: float,
        keep: int = 256,
        scrub: Callable[[str], str] = str,
        on_expire: Callable[[Job], None] | None = None,
    ) -> None:
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue(maxsize=size)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ttl = ttl
        self._keep = keep
        self._scrub = scrub
        self._on_expire = on_expire
        self._threads = [
            threading.Thread(target=self._run, name=f"guard-job-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def free(self) -> int:
        return self._queue.maxsize - self._queue.qsize()

    def submit(self, job: Job, work: Work) -> Job:
        self.expire()
        with self._lock:
            self._jobs[job.id] = job  # known before any worker can pick it up
        try:
            self._queue.put_nowait((job, work))
        except queue.Full:
            with self._lock:
                del self._jobs[job.id]
            raise QueueFull from None
        return job

    def get(self, job_id: str) -> Job | None:
        self.expire()
        with self._lock:
            return self._jobs.get(job_id)

    def expire(self) -> None:
        now = time.time()
        with self._lock:
            finished = sorted(
                (j for j in self._jobs.values() if j.finished), key=lambda j: j.finished or 0
            )
            # past their time, and the oldest beyond `keep`, so finished files cannot fill the disk
            excess = max(0, len(finished) - self._keep)
            old = finished[:excess] + [
                j for j in finished[excess:] if now - (j.finished or now) > self._ttl
            ]
            for j in old:
                del self._jobs[j.id]
        for j in old:
            if self._on_expire:
                self._on_expire(j)

    def close(self) -> None:
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, work = item
            job.state, job.stage = RUNNING, "starting"
            try:
                work(job)
                if job.result and job.result.get("notes"):
                    job.result["notes"] = [self._scrub(str(n)) for n in job.result["notes"]]
                job.state, job.stage = DONE, "finished"
            except GuardError as exc:  # a problem with the input: say which, in its words
                job.state, job.stage = FAILED, "failed"
                job.error = self._scrub(client_message(exc))
            except Exception:
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.state, job.stage = FAILED, "failed"
                job.error = "the server could not finish this job (see the server's log)"
            finally:
                job.finished = time.time()
