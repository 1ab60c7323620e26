"""What the units of one PostgreSQL write transaction sent, until the database answered it.

The write connection is in pipeline mode (``writer.py``): a statement goes out without
waiting for its answer, and a unit waits only where it reads one. So a unit may end, and
the next one start, before the database has answered the first one's writes. An answer
that says a unit failed (an error, or a write of its job's row that found the job no
longer this process's) may therefore come during a later unit, or just before the commit.

The ledger notes who sent what: every statement by unit, and the checks of the lease each
unit relied on. When something failed, :meth:`Answers.first_failure` says which unit was
first to fail; the store undoes the transaction back to that unit's savepoint, and tells
that unit and every later one (whose statements the database skipped, or which were built
on it) that they were not recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import psycopg

from mainspring.engine.store.contract import LeaseLostError


def lost(job_id: str) -> LeaseLostError:
    return LeaseLostError(f"job {job_id} was taken over or its run finished by another process")


@dataclasses.dataclass(slots=True)
class Check:
    """A statement whose answer a unit relied on without waiting for it: judged once
    answered. A write of the unit's job's row conditioned on holding it (one row changed),
    a read of the job's owner, a step recorded as new (one row)."""

    unit: int
    cursor: psycopg.Cursor[Any]
    #: Whether the answer is the one relied on.
    judge: Callable[[psycopg.Cursor[Any]], bool]
    #: The unit's failure if it is not.
    failure: Callable[[], BaseException]
    answer: bool | None = None

    def held(self) -> bool | None:
        """Whether the answer is the one relied on (None: not answered yet)."""
        if self.answer is None and self.cursor.pgresult is not None:
            self.answer = self.judge(self.cursor)
        return self.answer


def one_row(cursor: psycopg.Cursor[Any]) -> bool:
    return cursor.rowcount == 1


class Answers:
    """The statements and lease checks of one transaction's units, by unit."""

    __slots__ = ("_checks", "_confirmed", "_forget", "_pipe", "_sent", "unit")

    def __init__(self, pipe: psycopg.Pipeline | None, forget: Callable[[str], None]) -> None:
        self._pipe = pipe
        #: Called with a job found no longer held (this process forgets it).
        self._forget = forget
        #: The unit sending now (its index in the batch).
        self.unit = 0
        self._sent: list[tuple[int, psycopg.Cursor[Any]]] = []
        self._checks: list[Check] = []
        #: How many checks, from the first, are answered as relied on: each unit's end
        #: looks only at those after (answers come in the order statements went out).
        self._confirmed = 0

    def sent(self, cursor: psycopg.Cursor[Any]) -> None:
        self._sent.append((self.unit, cursor))

    def check_lease(
        self, job_id: str, cursor: psycopg.Cursor[Any], owner: str | None = None
    ) -> None:
        """The answer says whether this process held the job: one row changed, or, for a
        read of its owner, ``owner``."""

        def judge(cur: psycopg.Cursor[Any]) -> bool:
            if owner is None:
                return one_row(cur)
            row = cur.fetchone()
            return row is not None and row[0] == owner

        def failure() -> BaseException:
            self._forget(job_id)
            return lost(job_id)

        self.check(cursor, judge, failure)

    def check(
        self,
        cursor: psycopg.Cursor[Any],
        judge: Callable[[psycopg.Cursor[Any]], bool],
        failure: Callable[[], BaseException],
    ) -> None:
        """Judge the statement's answer once it comes; the unit fails if it is not right."""
        self._checks.append(Check(self.unit, cursor, judge, failure))

    def wait(self) -> None:
        """Wait for the answer to every statement sent so far (raising the first error)."""
        if self._pipe is not None and self._sent and self._sent[-1][1].pgresult is None:
            self._pipe.sync()

    def check_answered(self) -> None:
        """Raise the failure of the first answered check that is not right."""
        checks = self._checks
        while self._confirmed < len(checks):
            held = checks[self._confirmed].held()
            if held is None:
                return  # not answered yet, nor is any check after it
            if not held:
                raise checks[self._confirmed].failure()
            self._confirmed += 1

    def first_failure(self) -> tuple[int, BaseException | None] | None:
        """After every answer is in: the first unit that failed, with its failure (None for
        an error of one of its statements: the error the database answered with), or None
        if none did. A statement the database failed, or skipped after a failure, has
        no answer; every statement before it has one."""
        failed_at: int | None = None
        for unit, cursor in self._sent:
            if cursor.pgresult is None:
                failed_at = unit
                break
        for check in self._checks:
            if failed_at is not None and check.unit >= failed_at:
                break
            if check.held() is False:
                return check.unit, check.failure()
        return None if failed_at is None else (failed_at, None)

    def forget_from(self, unit: int) -> None:
        """Units from ``unit`` on were undone: what they sent no longer counts."""
        self._sent = [(u, cursor) for u, cursor in self._sent if u < unit]
        self._checks = [check for check in self._checks if check.unit < unit]
        self._confirmed = min(self._confirmed, len(self._checks))
