"""What can be wrong with a scoring request, in the server's own terms.

``serving`` and ``admission`` raise these; they know nothing of HTTP status codes or of the
field a route calls its documents (``documents`` or ``texts``). The routes turn each into an
HTTP answer (``routes/rerank.py``). ``index`` is a document's position in the request, or None
for the query.
"""

from __future__ import annotations


class Problem(Exception):
    """Base of the request problems; ``str()`` is the message without the field's name."""

    def __reduce__(self) -> tuple[object, ...]:
        # the engine process raises these for API processes: message and fields cross intact
        return _restore, (type(self), str(self), dict(self.__dict__))


def _restore(cls: type[Problem], message: str, fields: dict[str, object]) -> Problem:
    problem = cls.__new__(cls)
    Exception.__init__(problem, message)
    problem.__dict__.update(fields)
    return problem


class EmptyQuery(Problem):
    def __init__(self) -> None:
        super().__init__("must not be empty")


class InvalidText(Problem):
    """Not valid Unicode: a lone surrogate (valid JSON, ``"\\ud800"``, but no character)."""

    def __init__(self, index: int | None, position: int) -> None:
        super().__init__(f"is not valid Unicode: a lone surrogate at character {position}")
        self.index = index


class TextTooLong(Problem):
    def __init__(self, index: int | None, chars: int, limit: int) -> None:
        super().__init__(f"{chars} characters; at most {limit}")
        self.index = index


class TooManyDocuments(Problem):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} documents; at most {limit} per request")


class TooManyTokens(Problem):
    """A text the model can't take whole, when the request said not to truncate."""

    def __init__(self, index: int | None, tokens: int, limit: int) -> None:
        super().__init__(f"{tokens} tokens; the model takes at most {limit} (set truncate to cut it)")
        self.index, self.tokens, self.limit = index, tokens, limit


class Overloaded(Problem):
    def __init__(self, in_progress: int, waiting: int) -> None:
        super().__init__(f"overloaded: {in_progress} requests in progress and {waiting} queued; retry later")
        self.in_progress, self.waiting = in_progress, waiting


class Draining(Problem):
    def __init__(self) -> None:
        super().__init__("the server is shutting down")


class ModelUnavailable(Problem):
    def __init__(self, reason: str, loading: bool) -> None:
        super().__init__(reason)
        self.loading = loading  # worth retrying soon; a failed load is not


def first_lone_surrogate(text: str) -> int | None:
    """Where the first lone surrogate is, or None when ``text`` is valid Unicode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
