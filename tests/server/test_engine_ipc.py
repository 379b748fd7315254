"""What crosses between the engine process and API processes: frames, sequences, problems."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

from reranker_server.core.problems import Draining, ModelUnavailable, Overloaded, TooManyTokens
from reranker_server.model.encoding import Sequence
from reranker_server.serving.engine.ipc import EngineState, frame, receive


@pytest.mark.parametrize(
    "problem",
    [Overloaded(3, 7), Draining(), ModelUnavailable("the model is still loading", loading=True),
     TooManyTokens(2, 900, 512)],
)  # fmt: skip
def test_a_problem_raised_in_the_engine_arrives_whole(problem: Exception) -> None:
    arrived = pickle.loads(pickle.dumps(problem))
    assert type(arrived) is type(problem) and str(arrived) == str(problem)
    assert vars(arrived) == vars(problem)  # the fields the routes read: in_progress, loading, index...


def test_frames_carry_sequences_rows_and_state_in_order() -> None:
    sequence = Sequence((101, 7, 102), (0, 0, 0))
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    messages = [("run", 1, [sequence]), ("reply", 1, True, rows), ("state", 0, EngineState("ready"))]

    async def roundtrip() -> list[tuple[object, ...]]:
        reader = asyncio.StreamReader()
        for message in messages:
            reader.feed_data(frame(message))
        reader.feed_eof()
        got = [await receive(reader) for _ in messages]
        with pytest.raises(asyncio.IncompleteReadError):  # the other end went away
            await receive(reader)
        return got

    run, reply, state = asyncio.run(roundtrip())
    assert run[2] == [sequence] and hash(run[2][0]) == hash(sequence)  # the batcher's dedup key survives
    assert np.array_equal(reply[3], rows) and reply[3].dtype == np.float32
    assert state[2] == EngineState("ready")
