"""``smart3d.batching.DecodeBatcher``: concurrent requests decoded as one batch, each as it would be alone."""

import threading

import pytest
import torch

from smart3d.batching import DecodeBatcher, TooManyRequests
from smart3d.pipeline import load_pipeline
from smart3d.sampler import SamplingOptions

OPTS = SamplingOptions(num_steps=6, precision="fp32", repair_rounds=2, repair_steps=2)


@pytest.fixture(scope="module")
def pipe(tiny_weights):
    return load_pipeline(tiny_weights, "cpu")


def _concurrently(batcher, pipe, asks) -> dict:
    """Each (class, seed, options, user) of ``asks`` decoded from its own thread, all started at once:
    {(class, seed): the request's steps}."""
    out, start = {}, threading.Event()

    def one(name, seed, options, user):
        start.wait()
        out[(name, seed)] = list(batcher.steps(pipe.condition(name), seed, options, user=user))

    threads = [threading.Thread(target=one, args=a) for a in asks]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_requests_share_a_batch_and_get_what_they_would_alone(pipe):
    batcher = DecodeBatcher(pipe, window_s=0.5, max_batch=8)
    asks = [("chair", 1), ("airplane", 2), ("chair", 3)]
    out = _concurrently(batcher, pipe, [(n, s, OPTS, f"user{s}") for n, s in asks])
    batcher.close()
    assert batcher.batches == [3]                                   # one batch of three
    for name, seed in asks:
        alone = list(pipe.steps(pipe.condition(name), [seed], OPTS))
        got = out[(name, seed)]
        assert [s.index for s in got] == [s.index for s in alone]   # the same steps, repair rounds included
        assert all(s.tokens.shape == (1, pipe.layout.length) for s in got)
        assert torch.equal(got[-1].tokens, alone[-1].tokens)


def test_requests_with_other_settings_go_in_another_batch(pipe):
    batcher = DecodeBatcher(pipe, window_s=0.5)
    other = SamplingOptions(num_steps=3, precision="fp32", repair_rounds=0)
    out = _concurrently(batcher, pipe, [("chair", 1, OPTS, 1), ("chair", 2, other, 2), ("chair", 3, OPTS, 3)])
    batcher.close()
    assert sorted(batcher.batches) == [1, 2]
    assert len(out[("chair", 2)]) == 3


def test_a_user_with_too_many_requests_is_refused_and_bad_requests_change_nothing(pipe):
    batcher = DecodeBatcher(pipe, window_s=0.2, max_per_user=1)
    first = batcher.steps(pipe.condition("chair"), 1, OPTS, user="u")
    with pytest.raises(TooManyRequests, match="already waiting or running"):
        batcher.steps(pipe.condition("chair"), 2, OPTS, user="u")
    with pytest.raises(ValueError, match="one shape"):
        batcher.steps(pipe.condition("chair", 2), 2, OPTS, user="v")
    assert len(list(first)) >= OPTS.num_steps                     # the first request still completes
    second = list(batcher.steps(pipe.condition("chair"), 2, OPTS, user="u"))   # and its slot is free again
    assert second[-1].mask.sum() == 0
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.steps(pipe.condition("chair"), 3, OPTS, user="w")


def test_a_request_that_stops_reading_frees_its_slot(pipe):
    batcher = DecodeBatcher(pipe, window_s=0.0, max_per_user=1)
    it = batcher.steps(pipe.condition("chair"), 1, OPTS, user="u")
    next(it)
    it.close()                                                     # the consumer left after one step
    rest = list(batcher.steps(pipe.condition("chair"), 2, OPTS, user="u"))
    assert rest[-1].mask.sum() == 0
    batcher.close()
