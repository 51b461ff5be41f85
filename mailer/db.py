"""Engine and sessions built from Settings, and schema migrations (Alembic)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import Session

from mailer import files
from mailer.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_LOCK_TIMEOUT = 30.0


class DatabaseBusy(TimeoutError):
    """No transaction could begin in time: SQLite stayed locked by another one."""


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database; SQLite gets WAL, a busy timeout and FKs."""
    url = normalize_url(settings.database_url)
    kwargs: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "sqlite":
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            # Created 0600 before SQLite opens it: SQLite gives its -wal, -shm and -journal
            # files the database file's mode, so they are private too.
            files.private_directory(Path(db_path).parent)
            files.create_private_file(Path(db_path))
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_size"] = settings.database.pool_size
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if is_sqlite(engine):
        _serialize_sqlite_transactions(engine)
    return engine


def _serialize_sqlite_transactions(engine: Engine) -> None:
    """One transaction at a time per process, queued on a lock.

    SQLite has one writer. A deferred transaction that reads and then writes can fail
    with "database is locked" when another writer got in between, so every transaction
    takes the write lock up front (BEGIN IMMEDIATE). Waiting for it in SQLite's busy
    handler means sleeping and polling, which gives long tail latencies under load;
    threads of this process queue on a Python lock instead. Other processes still meet
    the busy timeout.
    """
    # Not an RLock: FastAPI may end a request's session on another thread than began it.
    lock = threading.Lock()

    def begin(connection: Any) -> None:
        if not lock.acquire(timeout=SQLITE_LOCK_TIMEOUT):
            raise DatabaseBusy("the SQLite database stayed busy; try again")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            lock.release()
            raise
        connection.info["mailer_holds_lock"] = True

    def end(connection: Any) -> None:
        if connection.info.pop("mailer_holds_lock", False):
            lock.release()

    # A connection going back to the pool, or dropped, with its transaction still open.
    def reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        end(connection_record)

    def invalidate(dbapi_connection: Any, connection_record: Any, exception: Any) -> None:
        end(connection_record)

    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)
    event.listen(engine.pool, "reset", reset)
    event.listen(engine.pool, "invalidate", invalidate)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy's "begin" event issue BEGIN itself (see _serialize_sqlite_transactions).
    dbapi_connection.isolation_level = None


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def is_current(engine: Engine) -> bool:
    """True when the database is migrated to the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def serves(engine: Engine) -> bool:
    """True when the database answers and holds mailer's schema (an empty SQLite file made
    in place of a lost one answers SELECT 1, but serves nothing)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT version_num FROM alembic_version"))
        return True
    except Exception:  # any failure at all means not ready; /readyz says so
        return False


def insert_many_unless_present(
    session: Session, model: Any, unique_column: str, rows: list[dict[str, Any]]
) -> None:
    """Side effect: the rows of `model` in one statement, leaving out those whose
    `unique_column` exists already (or is inserted concurrently: no IntegrityError)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(model).values(rows).on_conflict_do_nothing(index_elements=[unique_column])
    )


def insert_unless_present(session: Session, model: Any, unique_column: str, **values: Any) -> None:
    """Side effect: a row of `model` with `values`, unless one with the same `unique_column`
    exists (also when a concurrent transaction inserts it first: no IntegrityError)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(model).values(**values).on_conflict_do_nothing(index_elements=[unique_column])
    )
