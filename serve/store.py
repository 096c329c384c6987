"""The job store: SQLAlchemy over SQLite by default, any SQLAlchemy URL (PostgreSQL) in production.

Every status change goes through `transition`, a compare-and-set on the current status, so the
scheduler, a cancel request and start-up reconciliation can never overwrite each other.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text, create_engine, event, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")
ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "synth2_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, index=True)  # submission order (the queue's order)
    name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64), index=True)
    output_dir: Mapped[str] = mapped_column(Text)
    runner: Mapped[str] = mapped_column(String(16))
    handle: Mapped[str | None] = mapped_column(String(128), nullable=True)  # pid or Ray submission id
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_synth2_jobs_key_status", "key_id", "status"),)

    def to_dict(self) -> dict[str, Any]:
        d = {c.name: getattr(self, c.name) for c in self.__table__.columns}
        d["spec"] = json.loads(d["spec"])
        return d


class JobStore:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ writes

    def create(self, *, name: str, key_id: str, spec: dict, spec_hash: str, output_dir: str, runner: str) -> dict:
        with self.session.begin() as s:
            seq = (s.scalar(select(func.max(JobRow.seq))) or 0) + 1
            row = JobRow(id=uuid.uuid4().hex[:16], seq=seq, name=name, key_id=key_id, status="PENDING",
                         spec=json.dumps(spec, sort_keys=True), spec_hash=spec_hash, output_dir=output_dir,
                         runner=runner, attempts=0, created_at=time.time())
            s.add(row)
            s.flush()
            return row.to_dict()

    def transition(self, job_id: str, from_statuses: tuple[str, ...] | str, **fields) -> bool:
        """Set `fields` only if the job's status is one of `from_statuses`; True if it was."""
        if isinstance(from_statuses, str):
            from_statuses = (from_statuses,)
        if "status" in fields and fields["status"] in TERMINAL:
            fields.setdefault("finished_at", time.time())
        with self.session.begin() as s:
            res = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(from_statuses)).values(**fields))
            return res.rowcount == 1

    # ------------------------------------------------------------ reads

    def get(self, job_id: str) -> dict | None:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            return row.to_dict() if row else None

    def list(self, *, status: str | None = None, key_id: str | None = None, limit: int = 100,
             oldest_first: bool = False, spec_contains: str | None = None) -> list[dict]:
        """Jobs, newest first; `spec_contains`: only those whose spec JSON (sorted keys) holds that text."""
        q = select(JobRow)
        if spec_contains:
            q = q.where(JobRow.spec.contains(spec_contains, autoescape=True))
        if status:
            q = q.where(JobRow.status == status)
        if key_id:
            q = q.where(JobRow.key_id == key_id)
        q = q.order_by(JobRow.seq.asc() if oldest_first else JobRow.seq.desc()).limit(limit)
        with self.session() as s:
            return [r.to_dict() for r in s.scalars(q)]

    def count(self, *, statuses: tuple[str, ...], key_id: str | None = None) -> int:
        q = select(func.count()).select_from(JobRow).where(JobRow.status.in_(statuses))
        if key_id:
            q = q.where(JobRow.key_id == key_id)
        with self.session() as s:
            return int(s.scalar(q) or 0)

    def active_with_hash(self, spec_hash: str) -> dict | None:
        q = select(JobRow).where(JobRow.spec_hash == spec_hash, JobRow.status.in_(ACTIVE)).limit(1)
        with self.session() as s:
            row = s.scalars(q).first()
            return row.to_dict() if row else None

    def ping(self) -> bool:
        with self.engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return True


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
