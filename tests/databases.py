"""Fresh PostgreSQL databases for tests, copied from a migrated template off the test's
critical path: a background thread keeps a few copies ready and drops each used one
after its test. Every test still gets a database no other test has touched."""

from __future__ import annotations

import itertools
import os
import queue
import threading
import uuid

import psycopg

READY = 1
"""Copies kept ready ahead of the tests that take them."""


class PgDatabases:
    """Copies of `template` on the server `admin_url` (a maintenance database URL)."""

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self.ready: queue.Queue[str | BaseException] = queue.Queue()
        self.used: queue.Queue[str] = queue.Queue()
        self.wanted = threading.Semaphore(READY)
        self.stopping = threading.Event()
        self.counter = itertools.count()
        self.thread = threading.Thread(target=self._work, name="pg-databases", daemon=True)
        self.thread.start()

    def take(self) -> str:
        """The name of a fresh copy of the template, for one test."""
        name = self.ready.get(timeout=120)
        self.wanted.release()
        if isinstance(name, BaseException):
            raise name
        return name

    def give_back(self, name: str) -> None:
        """The test is over: the copy is dropped in the background."""
        self.used.put(name)

    def close(self) -> None:
        """Stop, and drop every copy made (ready or used)."""
        self.stopping.set()
        self.wanted.release()
        self.thread.join(timeout=120)
        while not self.ready.empty():
            left = self.ready.get()
            if isinstance(left, str):
                self.used.put(left)
        self._drop_used()

    def _work(self) -> None:
        while not self.stopping.is_set():
            self._drop_used()
            if not self.wanted.acquire(timeout=0.05):
                continue
            if self.stopping.is_set():
                break
            name = f"mailer_t_{os.getpid()}_{next(self.counter)}_{uuid.uuid4().hex[:6]}"
            try:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            except BaseException as exc:  # the test that takes it fails with this
                self.ready.put(exc)
            else:
                self.ready.put(name)

    def _drop_used(self) -> None:
        while True:
            try:
                name = self.used.get_nowait()
            except queue.Empty:
                return
            try:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:  # left behind, named after this worker
                print(f"could not drop {name}: {exc}")
