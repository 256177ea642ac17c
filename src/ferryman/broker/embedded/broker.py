"""EmbeddedBroker: the SQLite broker, owner of its clients and of the background cleaner."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

from ferryman.broker.base import OffsetReset
from ferryman.broker.embedded.admin import EmbeddedAdmin
from ferryman.broker.embedded.cleaner import Cleaner
from ferryman.broker.embedded.consumer import EmbeddedConsumer
from ferryman.broker.embedded.group import now_ms
from ferryman.broker.embedded.producer import EmbeddedProducer
from ferryman.broker.embedded.storage import Checkpointer, Store
from ferryman.broker.embedded.wakeup import Notifier
from ferryman.errors import ClientClosed, ConfigError, FerrymanError


class EmbeddedBroker:
    """A message log in one SQLite file that many processes on this machine share.

    ``clock`` (milliseconds since the epoch) stamps records and drives the cleaner; tests pass
    a fake one. ``cleaner_interval`` is the seconds between background cleaning passes (None:
    only explicit ``clean()``). ``fsync=True`` makes acknowledged records survive power loss,
    not only a killed process, at the cost of one fsync per batch.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], int] | None = None,
        cleaner_interval: float | None = 30.0,
        fsync: bool = False,
    ) -> None:
        if cleaner_interval is not None and cleaner_interval <= 0:
            raise ConfigError(f"cleaner_interval={cleaner_interval!r}: use seconds > 0, or None")
        self._store = Store(path, fsync=fsync)
        self._clock = clock or now_ms
        self._notifier = Notifier(self._store.wake_dir)
        self._stop = threading.Event()
        self._cleaner = Cleaner(self._store, self._notifier, self._clock, self._stop)
        self._checkpointer = Checkpointer(self._store)
        self._clients: list[EmbeddedAdmin | EmbeddedProducer | EmbeddedConsumer] = []
        self._lock = threading.Lock()
        self._closed = False
        self._cleaning: threading.Thread | None = None
        if cleaner_interval is not None:
            self._cleaning = threading.Thread(
                target=self._clean_loop,
                args=(cleaner_interval,),
                name="ferryman-embedded-cleaner",
                daemon=True,
            )
            self._cleaning.start()

    @property
    def path(self) -> str:
        return str(self._store.path)

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun: no new clients, and the cleaner stops between partitions."""
        return self._closed

    def _track(self, client: EmbeddedAdmin | EmbeddedProducer | EmbeddedConsumer) -> None:
        with self._lock:
            if self._closed:
                client.close()
                raise ClientClosed("this broker is closed; open a new one")
            # forget clients closed since: a service opening one per request would grow this
            self._clients = [c for c in self._clients if not c.closed]
            self._clients.append(client)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this broker is closed; open a new one")

    def admin(self) -> EmbeddedAdmin:
        self._check_open()
        client = EmbeddedAdmin(self._store, self._notifier, self._clock)
        self._track(client)
        return client

    def producer(self, config: Mapping[str, str] | None = None) -> EmbeddedProducer:
        self._check_open()
        client = EmbeddedProducer(
            self._store, self._notifier, self._clock, config, self._checkpointer.wrote
        )
        self._track(client)
        return client

    def consumer(
        self,
        group_id: str | None,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> EmbeddedConsumer:
        self._check_open()
        client = EmbeddedConsumer(
            self._store,
            self._notifier,
            group_id,
            auto_offset_reset=auto_offset_reset,
            config=config,
        )
        self._track(client)
        return client

    def clean(self, now_ms: int | None = None) -> None:
        """One cleaning pass (retention and compaction) over every topic, at ``now_ms``."""
        self._check_open()
        self._cleaner.clean(now_ms)

    def _clean_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._cleaner.clean(wait=False)
            except FerrymanError:
                continue  # a busy or damaged file: producers and consumers report it

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients, self._clients = self._clients, []
            # under the lock, so that whoever sees `closed` knows the cleaner was told to stop
            self._stop.set()
        if self._cleaning is not None:
            self._cleaning.join()
        for client in reversed(clients):
            client.close()
        self._cleaner.close()
        self._checkpointer.close()
        self._notifier.close()
