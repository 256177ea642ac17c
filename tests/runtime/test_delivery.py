"""Delivery: the handle a send returns, awaited, blocked on, or left alone."""

from __future__ import annotations

import asyncio
import gc
import logging
from concurrent.futures import Future

import pytest

from ferryman.errors import ProduceError, RequestTimeout
from ferryman.runtime.delivery import Delivery


def test_await_and_result_give_the_same_outcome() -> None:
    future: Future[int] = Future()
    d = Delivery(future, "send to 't'")
    with pytest.raises(TimeoutError):
        d.result(timeout=0.01)  # not yet: the send goes on
    future.set_result(7)
    assert d.done()
    assert d.result() == 7

    async def main() -> int:
        return await d

    assert asyncio.run(main()) == 7


def test_a_failure_raises_from_both_forms() -> None:
    future: Future[int] = Future()
    future.set_exception(ProduceError("refused"))
    d = Delivery(future, "send to 't'")
    with pytest.raises(ProduceError):
        d.result()

    async def main() -> int:
        return await d

    with pytest.raises(ProduceError):
        asyncio.run(main())


def test_past_its_deadline_a_wait_raises_what_the_sender_says() -> None:
    future: Future[None] = Future()
    d = Delivery(future, "receipt", deadline=0.0, timed_out=lambda: RequestTimeout("too late"))
    with pytest.raises(RequestTimeout, match="too late"):
        d.result()

    async def main() -> None:
        await d

    with pytest.raises(RequestTimeout, match="too late"):
        asyncio.run(main())
    assert not future.cancelled(), "waiting gave up, the send itself was not cancelled"


@pytest.mark.parametrize("fails_after_drop", [False, True])
def test_a_failure_nobody_retrieved_is_logged(
    caplog: pytest.LogCaptureFixture, fails_after_drop: bool
) -> None:
    future: Future[int] = Future()
    if not fails_after_drop:
        future.set_exception(ProduceError("refused by the broker"))
    d = Delivery(future, "send to 'orders'")
    with caplog.at_level(logging.ERROR, "ferryman.delivery"):
        del d
        gc.collect()
        if fails_after_drop:
            future.set_exception(ProduceError("refused by the broker"))
    assert "send to 'orders' failed and nobody awaited it" in caplog.text
    assert "refused by the broker" in caplog.text


def test_a_retrieved_failure_is_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    future: Future[int] = Future()
    future.set_exception(ProduceError("refused"))
    d = Delivery(future, "send to 'orders'")
    with pytest.raises(ProduceError):
        d.result()
    with caplog.at_level(logging.ERROR, "ferryman.delivery"):
        del d
        gc.collect()
    assert caplog.text == ""
