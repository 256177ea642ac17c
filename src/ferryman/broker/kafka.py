"""Apache Kafka through confluent-kafka (librdkafka): the Broker protocol on a real cluster.

Producers are idempotent with ``acks=all`` and the ``murmur2_random`` partitioner (the key ->
partition rule of every backend); a thread serves their delivery reports as futures. Consumers
commit explicitly, use cooperative-sticky assignment and report rebalances through the protocol's
callbacks. Any librdkafka property in ``config`` passes through and wins over these defaults.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, NoReturn

from confluent_kafka import (
    Consumer as _RdConsumer,
)
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
)
from confluent_kafka import (
    Producer as _RdProducer,
)
from confluent_kafka import (
    TopicPartition as _RdPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewTopic

from ferryman.broker.base import OffsetReset, RebalanceCallback
from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ClientClosed,
    CommitFailed,
    ConfigError,
    InvalidTopic,
    ProduceError,
    TopicExists,
    TopicMismatch,
    UnknownPartition,
    UnknownTopic,
)
from ferryman.records import (
    Headers,
    PartitionOffsets,
    Record,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)

__all__ = ["KafkaAdmin", "KafkaBroker", "KafkaConsumer", "KafkaProducer"]

log = logging.getLogger("ferryman.broker.kafka")

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "compression.type": "lz4",
    "linger.ms": 5,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": False,
}
_UNSET = _RdPartition("", 0).offset  # librdkafka's OFFSET_INVALID (-1001)
_UNAVAILABLE = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
}
_UNKNOWN_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
_STALE_MEMBER = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.STALE_MEMBER_EPOCH,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
}
_INTERNAL_TOPIC_PREFIX = "__"
_EDGES = (OffsetSpec.earliest(), OffsetSpec.latest())  # type: ignore[no-untyped-call]


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def _raise_mapped(exc: BaseException, what: str, *, bootstrap: str, topic: str = "") -> NoReturn:
    """Raise the ferryman error for a librdkafka failure of ``what``."""
    err = _kafka_error(exc)
    if err is None:
        raise BrokerError(f"{what} failed: {exc}") from exc
    code = err.code()
    if code in _UNAVAILABLE:
        raise BrokerUnavailable(
            f"{what} failed: no answer from Kafka at {bootstrap} ({err.str()}); check that the "
            "brokers run and that the address, port and security settings "
            "(FERRYMAN_KAFKA_SECURITY_PROTOCOL, ...) are right"
        ) from exc
    if code in _UNKNOWN_TOPIC:
        raise UnknownTopic(
            f"{what} failed: topic {topic!r} does not exist on {bootstrap}; create it first"
        ) from exc
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        raise TopicExists(
            f"{what} failed: topic {topic!r} already exists; pass exist_ok=True to accept it"
        ) from exc
    if code in {
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.INVALID_PARTITIONS,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_CONFIG,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_REQUEST,
    }:
        raise InvalidTopic(f"{what} failed: {err.str()}; fix the topic's declaration") from exc
    if code == KafkaError._INVALID_ARG:
        raise ConfigError(f"{what} failed: {err.str()}; fix the librdkafka properties") from exc
    raise BrokerError(f"{what} failed: {err.str()}") from exc


_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.REPLICA_NOT_AVAILABLE,
}


def _moving_leader(exc: BaseException) -> bool:
    err = _kafka_error(exc)
    return err is not None and err.code() in _LEADER_MOVING


def _reason(exc: BaseException) -> str:
    err = _kafka_error(exc)
    return err.str() if err is not None else str(exc)


def _client_config(
    bootstrap: str, defaults: Mapping[str, Any], *overrides: Mapping[str, str] | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log, **defaults}
    for more in overrides:
        config.update(more or {})
    return config


class KafkaBroker:
    """A connection to one Kafka cluster; makes admin clients, producers and consumers.

    Construction asks the cluster for its metadata and raises BrokerUnavailable if no broker
    answers within ``connect_timeout`` seconds; ``timeout`` bounds every later admin request.
    """

    def __init__(
        self,
        bootstrap: str,
        config: Mapping[str, str],
        *,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.config = dict(config)
        self.timeout = timeout
        self._admin: KafkaAdmin | None = None
        self._closed = False
        self._admin_client = self._new_admin_client()
        try:
            self._admin_client.list_topics(timeout=connect_timeout)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() in _UNAVAILABLE:
                raise BrokerUnavailable(
                    f"no Kafka broker answered at {bootstrap} within {connect_timeout:g}s: check "
                    "that Kafka runs there (for tests: scripts/kafka.sh start), that the host and "
                    "port are right, and the security settings (FERRYMAN_KAFKA_SECURITY_PROTOCOL, "
                    "FERRYMAN_KAFKA_SASL_*)"
                ) from exc
            _raise_mapped(exc, "connecting to Kafka", bootstrap=bootstrap)

    def _new_admin_client(self) -> AdminClient:
        try:
            return AdminClient(_client_config(self.bootstrap, {}, self.config))
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka client configuration for {self.bootstrap}: {_reason(exc)}; check the "
                "librdkafka properties passed (FERRYMAN_KAFKA_*)"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"the Kafka broker {self.bootstrap} was closed; open a new one")

    def admin(self) -> KafkaAdmin:
        self._check_open()
        if self._admin is None:
            self._admin = KafkaAdmin(self._admin_client, self.bootstrap, self.timeout)
        return self._admin

    def producer(self, config: Mapping[str, str] | None = None) -> KafkaProducer:
        self._check_open()
        return KafkaProducer(
            _client_config(self.bootstrap, PRODUCER_DEFAULTS, self.config, config),
            self.timeout,
        )

    def consumer(
        self,
        group_id: str | None,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> KafkaConsumer:
        self._check_open()
        # librdkafka needs a group id even for assign(); a standalone one never joins or commits.
        group = group_id if group_id is not None else f"ferryman-standalone-{uuid.uuid4().hex}"
        settings = _client_config(
            self.bootstrap,
            {**CONSUMER_DEFAULTS, "auto.offset.reset": auto_offset_reset},
            self.config,
            config,
            {"group.id": group},
        )
        return KafkaConsumer(settings, group_id, auto_offset_reset, self.timeout)

    def close(self) -> None:
        self._closed = True


class KafkaAdmin:
    """Topics, offsets and group lag through librdkafka's AdminClient."""

    def __init__(self, client: AdminClient, bootstrap: str, timeout: float) -> None:
        self._client = client
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._closed = False

    def _fail(self, exc: BaseException, what: str, topic: str = "") -> NoReturn:
        _raise_mapped(exc, what, bootstrap=self._bootstrap, topic=topic)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this Kafka admin client was closed; ask the broker for a new one")

    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        self._check_open()
        if spec.partitions < 1:
            raise InvalidTopic(
                f"topic {spec.name!r} is declared with {spec.partitions} partitions; "
                "declare at least 1"
            )
        try:
            new = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor or -1,
                config=dict(spec.config),
            )
            future = self._client.create_topics(
                [new], operation_timeout=self._timeout, request_timeout=self._timeout
            )[spec.name]
            future.result()
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS and exist_ok:
                self._check_matches(spec)
                return
            self._fail(exc, f"creating topic {spec.name!r}", spec.name)
        except (ValueError, TypeError) as exc:
            raise InvalidTopic(f"cannot create topic {spec.name!r}: {exc}") from exc
        self._wait_for_leaders(spec.name, spec.partitions)

    def _wait_for_leaders(self, name: str, partitions: int) -> None:
        # Creation returns before every broker knows the topic; producing at once would fail.
        deadline = time.monotonic() + self._timeout
        while True:
            topic = self._metadata(name)
            if (
                topic is not None
                and topic.error is None
                and len(topic.partitions) == partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                return
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"topic {name!r} was created but its partitions have no leader after "
                    f"{self._timeout:g}s; check the brokers at {self._bootstrap}"
                )
            time.sleep(0.05)

    def _metadata(self, name: str) -> Any:
        try:
            md = self._client.list_topics(topic=name, timeout=self._timeout)
        except KafkaException as exc:
            self._fail(exc, f"reading metadata of topic {name!r}", name)
        return md.topics.get(name)

    def _check_matches(self, spec: TopicSpec) -> None:
        info = self.describe_topic(spec.name)
        problems = []
        if info.partitions != spec.partitions:
            problems.append(
                f"it has {info.partitions} partitions, the declaration {spec.partitions} "
                f"(declare partitions={info.partitions}, or add partitions with kafka-topics.sh "
                f"--alter --partitions {spec.partitions}, which moves keys to other partitions)"
            )
        wanted = spec.config.get("cleanup.policy", "delete")
        actual = info.config.get("cleanup.policy", "delete")
        if _policy(wanted) != _policy(actual):
            problems.append(
                f"it has cleanup.policy={actual}, the declaration {wanted} (change it with "
                f"kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config cleanup.policy={wanted}, or declare the topic as it is)"
            )
        if problems:
            raise TopicMismatch(
                f"topic {spec.name!r} on {self._bootstrap} differs from its declaration: "
                + "; ".join(problems)
                + ". ferryman never changes an existing topic by itself."
            )

    def delete_topic(self, name: str) -> None:
        self._check_open()
        try:
            self._client.delete_topics(
                [name], operation_timeout=self._timeout, request_timeout=self._timeout
            )[name].result()
        except KafkaException as exc:
            self._fail(exc, f"deleting topic {name!r}", name)
        # Deletion is asynchronous; wait until metadata no longer lists it, so it can be recreated.
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            topic = self._metadata(name)
            if topic is None or topic.error is not None:
                return
            time.sleep(0.05)

    def describe_topic(self, name: str) -> TopicInfo:
        self._check_open()
        topic = self._metadata(name)
        if topic is None or topic.error is not None:
            if topic is not None and topic.error.code() not in _UNKNOWN_TOPIC:
                raise BrokerError(f"describing topic {name!r} failed: {topic.error.str()}")
            raise UnknownTopic(f"topic {name!r} does not exist on {self._bootstrap}")
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        try:
            entries = self._client.describe_configs([resource], request_timeout=self._timeout)[
                resource
            ].result()
        except KafkaException as exc:
            self._fail(exc, f"describing the config of topic {name!r}", name)
        config = {key: entry.value for key, entry in entries.items() if entry.value is not None}
        return TopicInfo(name=name, partitions=len(topic.partitions), config=config)

    def list_topics(self) -> list[str]:
        self._check_open()
        try:
            md = self._client.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            self._fail(exc, "listing topics")
        return sorted(t for t in md.topics if not t.startswith(_INTERNAL_TOPIC_PREFIX))

    def offsets(self, topic: str) -> dict[int, PartitionOffsets]:
        self._check_open()
        meta = self._metadata(topic)
        if meta is None or meta.error is not None:
            raise UnknownTopic(f"topic {topic!r} does not exist on {self._bootstrap}")
        parts = sorted(meta.partitions)
        bounds: dict[int, list[int]] = {p: [0, 0] for p in parts}
        deadline = time.monotonic() + self._timeout
        for index, spec in enumerate(_EDGES):
            request = {_RdPartition(topic, p): spec for p in parts}
            while True:
                try:
                    futures = self._client.list_offsets(request, request_timeout=self._timeout)
                    for tp, future in futures.items():
                        bounds[tp.partition][index] = future.result().offset
                    break
                except KafkaException as exc:
                    # A new topic's or a failed-over partition's leader may not be ready yet.
                    if not _moving_leader(exc) or time.monotonic() >= deadline:
                        self._fail(exc, f"listing the offsets of topic {topic!r}", topic)
                    time.sleep(0.05)
        return {p: PartitionOffsets(earliest=lo, latest=hi) for p, (lo, hi) in bounds.items()}

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        self._check_open()
        request = ConsumerGroupTopicPartitions(group)
        try:
            result = self._client.list_consumer_group_offsets(
                [request], request_timeout=self._timeout
            )[group].result()
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return {}
            self._fail(exc, f"reading the offsets of group {group!r}", topic or "")
        return {
            TopicPartition(tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or []
            if tp.offset >= 0 and (topic is None or tp.topic == topic)
        }

    def group_lag(self, group: str, topic: str) -> dict[TopicPartition, int]:
        bounds = self.offsets(topic)
        committed = self.committed(group, topic)
        lag = {}
        for p, b in bounds.items():
            tp = TopicPartition(topic, p)
            start = max(committed.get(tp, b.earliest), b.earliest)
            lag[tp] = max(b.latest - start, 0)
        return lag

    def close(self) -> None:
        self._closed = True


def _policy(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class KafkaProducer:
    """An idempotent producer; a poller thread turns delivery reports into resolved futures."""

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self._bootstrap = str(config.get("bootstrap.servers"))
        self._timeout = timeout
        config = {**config, "error_cb": self._on_error}
        try:
            self._producer = _RdProducer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka producer configuration: {_reason(exc)}; check the librdkafka properties"
            ) from exc
        self._partitions: dict[str, int] = {}
        self._fatal: KafkaError | None = None
        self._closed = False
        self._poller = threading.Thread(
            target=self._serve_reports, name="ferryman-kafka-producer", daemon=True
        )
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("Kafka producer failed for good: %s", err.str())
        else:
            log.warning("Kafka producer: %s", err.str())

    def _serve_reports(self) -> None:
        while not self._closed:
            self._producer.poll(0.1)

    def _partition_count(self, topic: str, partition: int | None) -> int:
        count = self._partitions.get(topic)
        if count is None or (partition is not None and partition >= count):
            try:
                md = self._producer.list_topics(topic=topic, timeout=self._timeout)
            except KafkaException as exc:
                _raise_mapped(
                    exc, f"sending to topic {topic!r}", bootstrap=self._bootstrap, topic=topic
                )
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                raise UnknownTopic(
                    f"cannot send to topic {topic!r}: it does not exist on {self._bootstrap}; "
                    "create it first"
                )
            count = len(meta.partitions)
            self._partitions[topic] = count
        return count

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        if self._closed:
            raise ClientClosed("this Kafka producer was closed; ask the broker for a new one")
        if self._fatal is not None:
            raise ProduceError(
                f"the Kafka producer failed for good ({self._fatal.str()}); open a new producer"
            )
        count = self._partitions.get(topic) or self._partition_count(topic, partition)
        if partition is not None and not 0 <= partition < count:
            count = self._partition_count(topic, partition)
            if not 0 <= partition < count:
                raise UnknownPartition(
                    f"topic {topic!r} has partitions 0..{count - 1}; there is no {partition}"
                )
        future: Future[RecordMetadata] = Future()

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                future.set_result(
                    RecordMetadata(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
                )
            else:
                future.set_exception(
                    ProduceError(
                        f"a record for topic {topic!r} was not acknowledged: {err.str()}; "
                        "it may be sent again"
                    )
                )

        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    on_delivery=delivered,
                    timestamp=timestamp or 0,
                    headers=list(headers) if headers else None,
                )
                return future
            except BufferError:
                # The local queue is full: wait for acknowledgements (back-pressure).
                if time.monotonic() >= deadline:
                    raise ProduceError(
                        f"the producer's queue stayed full for {self._timeout:g}s; the brokers "
                        f"at {self._bootstrap} do not keep up or do not answer"
                    ) from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.code() in _UNKNOWN_TOPIC:
                    _raise_mapped(exc, "sending", bootstrap=self._bootstrap, topic=topic)
                reason = err.str() if err is not None else str(exc)
                raise ProduceError(
                    f"cannot send a record to topic {topic!r}: {reason}; check the record "
                    "(size, fields) against the producer's settings"
                ) from exc

    def flush(self, timeout: float | None = None) -> int:
        if self._closed:
            return 0
        return int(self._producer.flush(-1 if timeout is None else timeout))

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._poller.join()


class KafkaConsumer:
    """A consumer group member (or a standalone reader) with explicit commits."""

    def __init__(
        self,
        config: dict[str, Any],
        group_id: str | None,
        auto_offset_reset: OffsetReset,
        timeout: float,
    ) -> None:
        self._bootstrap = str(config.get("bootstrap.servers"))
        self._group_id = group_id
        self._reset = auto_offset_reset
        self._timeout = timeout
        try:
            self._consumer = _RdConsumer({**config, "error_cb": self._on_error})
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka consumer configuration: {_reason(exc)}; check the librdkafka properties"
            ) from exc
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._next: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    @staticmethod
    def _on_error(err: KafkaError) -> None:
        log.warning("Kafka consumer: %s", err.str())

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this Kafka consumer was closed; ask the broker for a new one")

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        self._check_open()
        if self._group_id is None:
            raise ConfigError(
                "a consumer without a group cannot subscribe; give it a group_id or use assign()"
            )
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._revoked,
        )

    def _assigned(self, _: object, partitions: list[_RdPartition]) -> None:
        if self._on_assign is not None and partitions and not self._closed:
            self._on_assign({TopicPartition(p.topic, p.partition) for p in partitions})

    def _revoked(self, _: object, partitions: list[_RdPartition]) -> None:
        gone = {TopicPartition(p.topic, p.partition) for p in partitions}
        try:
            # The partitions are still owned here, so the callback can commit their positions.
            if self._on_revoke is not None and gone and not self._closed:
                self._on_revoke(gone)
        finally:
            for tp in gone:
                self._next.pop(tp, None)
                self._paused.discard(tp)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        wanted = set(partitions)
        current = self.assignment()
        if current - wanted:
            self._consumer.incremental_unassign(
                [_RdPartition(tp.topic, tp.partition) for tp in current - wanted]
            )
        if wanted - current:
            self._consumer.incremental_assign(
                [_RdPartition(tp.topic, tp.partition) for tp in wanted - current]
            )

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        return {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        self._check_open()
        # poll() returns at the first record; consume(timeout=0) then drains what is fetched.
        # (consume() with a timeout would wait for max_records or the whole timeout.)
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        messages: list[Any] = [first]  # Any: the stubs make every field Optional
        if max_records > 1:
            messages.extend(self._consumer.consume(max_records - 1, timeout=0))
        records = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._message_error(err)
                continue
            tp = TopicPartition(msg.topic(), msg.partition())
            offset = msg.offset()
            records.append(
                Record(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=offset,
                    key=msg.key(),
                    value=msg.value(),
                    headers=tuple((k, v or b"") for k, v in msg.headers() or ()),
                    timestamp=msg.timestamp()[1],
                )
            )
            self._next[tp] = offset + 1
        return records

    def _message_error(self, err: KafkaError) -> None:
        if err.code() in _UNKNOWN_TOPIC:
            # A subscribed topic that does not exist (yet): keep going, as the group does.
            log.warning("Kafka consumer: %s", err.str())
            return
        if err.fatal():
            raise BrokerError(f"the Kafka consumer failed for good: {err.str()}")
        log.warning("Kafka consumer: %s", err.str())

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_open()
        if not offsets:
            return
        if self._group_id is None:
            raise CommitFailed(
                "a consumer without a group cannot commit; give it a group_id to keep offsets"
            )
        owned = self.assignment()
        lost = sorted(set(offsets) - owned)
        if lost:
            raise CommitFailed(
                f"cannot commit {', '.join(map(str, lost))}: this member no longer owns "
                "them (revoked in a rebalance); their records go to the new owner, drop them"
            )
        request = [_RdPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            result = self._consumer.commit(offsets=request, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(exc)
        for tp in result or ():
            if tp.error is not None:
                self._commit_failed(KafkaException(tp.error))

    def _commit_failed(self, exc: KafkaException) -> NoReturn:
        err = _kafka_error(exc)
        if err is not None and err.code() in _STALE_MEMBER:
            raise CommitFailed(
                f"commit refused: {err.str()}; the group rebalanced and this member's "
                "partitions were reassigned, so drop the uncommitted work"
            ) from exc
        if err is not None and err.code() in _UNAVAILABLE:
            raise CommitFailed(
                f"commit failed: no answer from Kafka at {self._bootstrap} ({err.str()}); "
                "the records will be redelivered"
            ) from exc
        raise CommitFailed(f"commit failed: {exc}") from exc

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        wanted = list(partitions)
        if self._group_id is None or not wanted:
            return dict.fromkeys(wanted)
        try:
            result = self._consumer.committed(
                [_RdPartition(tp.topic, tp.partition) for tp in wanted], timeout=self._timeout
            )
        except KafkaException as exc:
            _raise_mapped(exc, "reading committed offsets", bootstrap=self._bootstrap)
        return {
            TopicPartition(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in result
        }

    def position(self, partition: TopicPartition) -> int:
        self._check_open()
        if partition in self._next:
            return self._next[partition]
        [tp] = self._consumer.position([_RdPartition(partition.topic, partition.partition)])
        if tp.offset >= 0:
            return int(tp.offset)
        # Nothing read yet: the next record is at the committed offset, or where reset points.
        committed = self.committed([partition])[partition]
        lo, hi = self._watermarks(partition)
        if committed is not None and lo <= committed <= hi:
            return committed
        return lo if self._reset == "earliest" else hi

    def _watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        try:
            lo, hi = self._consumer.get_watermark_offsets(
                _RdPartition(partition.topic, partition.partition), timeout=self._timeout
            )
        except KafkaException as exc:
            _raise_mapped(
                exc,
                f"reading the offsets of {partition}",
                bootstrap=self._bootstrap,
                topic=partition.topic,
            )
        return int(lo), int(hi)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        target = _RdPartition(partition.topic, partition.partition, offset)
        try:
            self._consumer.seek(target)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is None or err.code() != KafkaError._STATE:
                _raise_mapped(exc, f"seeking {partition}", bootstrap=self._bootstrap)
            if partition not in self.assignment():
                raise UnknownPartition(
                    f"cannot seek {partition}: this consumer does not own it"
                ) from exc
            # Fetching has not started for a just-assigned partition: re-add it at the offset.
            self._consumer.incremental_unassign(
                [_RdPartition(partition.topic, partition.partition)]
            )
            self._consumer.incremental_assign([target])
            if partition in self._paused:
                self._consumer.pause([_RdPartition(partition.topic, partition.partition)])
        self._next[partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        tps = list(partitions)
        self._consumer.pause([_RdPartition(tp.topic, tp.partition) for tp in tps])
        self._paused.update(tps)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        tps = list(partitions)
        self._consumer.resume([_RdPartition(tp.topic, tp.partition) for tp in tps])
        self._paused.difference_update(tps)

    def close(self) -> None:
        if self._closed:
            return
        # Closing leaves the group; the user's callbacks must not run (no commit on close).
        self._closed = True
        self._consumer.close()
