"""The runs list: newest first, filtered by function, status, time range and a CEL
expression on the triggering event, paged by cursor (fast on 100,000 runs), live."""

from __future__ import annotations

import datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mainspring.engine.records import Run, RunStatus
from mainspring.engine.run_search import SCAN_LIMIT, SCAN_SECONDS
from mainspring.protocol.expressions import Expression, ExpressionError, compile_expression
from mainspring.server.dashboard.base import PAGE_SIZE, SINCE_CHOICES, PageBase, run_duration
from mainspring.server.dashboard.security import Session
from mainspring.server.runs_api import MAX_EXPRESSION_CHARS


class RunsList(PageBase):
    """The runs list."""

    async def runs_page(self, request: Request, session: Session) -> Response:
        query = request.query_params
        function_id = query.get("function") or None
        status_name = query.get("status") or None
        since = query.get("since") or ""
        q = (query.get("q") or "").strip()
        statuses = None
        if status_name is not None:
            try:
                statuses = [RunStatus(status_name)]
            except ValueError:
                return self.problem(request, session, 400, f"no run status {status_name!r}")
        created_after: datetime.datetime | None = None
        created_before: datetime.datetime | None = None
        try:
            if query.get("from"):
                created_after = datetime.datetime.fromisoformat(query["from"])
            if query.get("until"):
                created_before = datetime.datetime.fromisoformat(query["until"])
        except ValueError as exc:
            return self.problem(request, session, 400, f"a time is not a date and time: {exc}")
        if since in SINCE_CHOICES:
            created_after = datetime.datetime.now().astimezone() - SINCE_CHOICES[since]
        older, newer = query.get("older"), query.get("newer")
        expression: Expression | None = None
        q_error: str | None = None
        if len(q) > MAX_EXPRESSION_CHARS:
            q_error = f"the expression is longer than {MAX_EXPRESSION_CHARS} characters"
        elif q:
            try:
                expression = compile_expression(q)
            except ExpressionError as exc:
                # The compiler's own words (the expression is in the box above them).
                q_error = exc.reason.removeprefix("invalid expression: ")

        async def page(after: str | None, newest_first: bool) -> list[Run]:
            return await self.engine.list_runs(
                function_id=function_id,
                statuses=statuses,
                created_after=created_after,
                created_before=created_before,
                limit=PAGE_SIZE + 1,
                after=after,
                newest_first=newest_first,
            )

        # Whether the search stopped before filling the page (run_search's budget).
        partial = False
        if q_error is not None:
            runs: list[Run] = []
            more_newer = more_older = False
        elif expression is not None:
            # A search pages newest first only (engine/run_search.py): an older page links
            # back to the newest, not one page up. A made-up `newer` shows the newest.
            found = await self.engine.search_runs(
                function_ids=None if function_id is None else [function_id],
                statuses=statuses,
                created_after=created_after,
                created_before=created_before,
                expression=expression,
                limit=PAGE_SIZE,
                cursor=older,
            )
            runs = found.runs
            more_older = found.cursor is not None
            partial = more_older and len(runs) < PAGE_SIZE
            more_newer = older is not None
            older = found.cursor
        elif newer:
            runs = await page(newer, False)
            more_newer = len(runs) > PAGE_SIZE
            runs = list(reversed(runs[:PAGE_SIZE]))
            more_older = True
        else:
            runs = await page(older, True)
            more_older = len(runs) > PAGE_SIZE
            runs = runs[:PAGE_SIZE]
            more_newer = older is not None
        kept = {
            k: v
            for k, v in {
                "function": function_id,
                "status": status_name,
                "since": since,
                "from": query.get("from"),
                "until": query.get("until"),
                "q": q,
            }.items()
            if v
        }
        older_url = newer_url = None
        if expression is not None:
            older_url = "/runs?" + urlencode({**kept, "older": older}) if more_older else None
            newer_url = "/runs?" + urlencode(kept) if more_newer else None
        else:
            if runs and more_older:
                older_url = "/runs?" + urlencode({**kept, "older": runs[-1].id})
            if runs and more_newer:
                newer_url = "/runs?" + urlencode({**kept, "newer": runs[0].id})
        now = self.engine.clock.now_ms()
        rows = [(run, self._function_name(run.function_id), run_duration(run, now)) for run in runs]
        template = "runs_rows.html" if query.get("fragment") else "runs.html"
        return self.render(
            request,
            session,
            template,
            # A bad expression is the request's fault: a 400, the compiler's message shown
            # by the filter box (the live fragment is not swapped in on a 400).
            400 if q_error is not None else 200,
            rows=rows,
            functions=sorted(self.engine.functions),
            statuses=[s.value for s in RunStatus],
            selected={
                "function": function_id or "",
                "status": status_name or "",
                "since": since,
                "from": query.get("from", ""),
                "until": query.get("until", ""),
                "q": q,
            },
            q_error=q_error,
            partial=partial,
            scan=f"{SCAN_LIMIT:,} runs, for {SCAN_SECONDS * 1000:g} ms",
            live=q_error is None and not (query.get("older") or newer),
            older_url=older_url,
            newer_url=newer_url,
            newer_label="← Newest" if expression is not None else "← Newer",
        )
