"""Topics, offsets and group lag through librdkafka's AdminClient."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any, NoReturn

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as _RdPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewPartitions, NewTopic

from ferryman.broker.base import GroupMember
from ferryman.broker.kafka._errors import (
    UNKNOWN_TOPIC,
    kafka_error,
    raise_mapped,
    while_leader_moves,
)
from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ClientClosed,
    GroupBusy,
    InvalidTopic,
    TopicMismatch,
    UnknownTopic,
)
from ferryman.records import PartitionOffsets, TopicInfo, TopicPartition, TopicSpec

_INTERNAL_TOPIC_PREFIX = "__"
_EDGES = (OffsetSpec.earliest(), OffsetSpec.latest())  # type: ignore[no-untyped-call]


class KafkaAdmin:
    """Topics, offsets and group lag through librdkafka's AdminClient."""

    def __init__(self, client: AdminClient, bootstrap: str, timeout: float) -> None:
        self._client = client
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._closed = False

    def _fail(self, exc: BaseException, what: str, topic: str = "") -> NoReturn:
        raise_mapped(exc, what, bootstrap=self._bootstrap, topic=topic)

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
            err = kafka_error(exc)
            if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS and exist_ok:
                # Another client may have created it a moment ago: until the metadata reaches
                # this client, describing it would say it does not exist.
                self._wait_for_leaders(spec.name, None)
                self._check_matches(spec)
                self._wait_for_leaders(spec.name, spec.partitions)
                return
            self._fail(exc, f"creating topic {spec.name!r}", spec.name)
        except (ValueError, TypeError) as exc:
            raise InvalidTopic(f"cannot create topic {spec.name!r}: {exc}") from exc
        self._wait_for_leaders(spec.name, spec.partitions)

    def _wait_for_leaders(self, name: str, partitions: int | None) -> None:
        """Wait until ``name`` has ``partitions`` partitions (None: any number), all led."""
        # Creation returns before every broker knows the topic; producing at once would fail.
        deadline = time.monotonic() + self._timeout
        while True:
            topic = self._metadata(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and (partitions is None or len(topic.partitions) == partitions)
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

    def alter_topic(
        self, name: str, *, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        self._check_open()
        have = self.describe_topic(name).partitions
        if partitions is not None and partitions < have:
            raise InvalidTopic(
                f"topic {name!r} has {have} partitions; a topic cannot lose partitions "
                f"(their records would go): declare partitions={have} or more"
            )
        try:
            if config:
                entries = [
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in config.items()
                ]
                resource = ConfigResource(
                    ConfigResource.Type.TOPIC, name, incremental_configs=entries
                )
                self._client.incremental_alter_configs([resource], request_timeout=self._timeout)[
                    resource
                ].result()
            if partitions is not None and partitions > have:
                self._client.create_partitions(
                    [NewPartitions(name, partitions)],
                    operation_timeout=self._timeout,
                    request_timeout=self._timeout,
                )[name].result()
                self._wait_for_leaders(name, partitions)
        except KafkaException as exc:
            self._fail(exc, f"altering topic {name!r}", name)

    def describe_topic(self, name: str) -> TopicInfo:
        self._check_open()
        topic = self._metadata(name)
        if topic is None or topic.error is not None:
            if topic is not None and topic.error.code() not in UNKNOWN_TOPIC:
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
        # Only DYNAMIC_TOPIC_CONFIG is set on the topic; every other source is a broker default.
        # (describe_configs reports the source as a plain int, not as the ConfigSource enum.)
        on_topic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        defaults = frozenset(
            k for k in config if getattr(entries[k].source, "value", entries[k].source) != on_topic
        )
        return TopicInfo(name, len(topic.partitions), config, defaults)

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
            try:
                # A new topic's or a failed-over partition's leader may not be ready yet.
                found = while_leader_moves(
                    functools.partial(self._list_offsets, request),
                    max(0.0, deadline - time.monotonic()),
                )
            except KafkaException as exc:
                self._fail(exc, f"listing the offsets of topic {topic!r}", topic)
            for partition, offset in found.items():
                bounds[partition][index] = offset
        return {p: PartitionOffsets(earliest=lo, latest=hi) for p, (lo, hi) in bounds.items()}

    def _list_offsets(self, request: dict[_RdPartition, Any]) -> dict[int, int]:
        futures = self._client.list_offsets(request, request_timeout=self._timeout)
        return {tp.partition: future.result().offset for tp, future in futures.items()}

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        self._check_open()
        request = ConsumerGroupTopicPartitions(group)
        try:
            result = self._client.list_consumer_group_offsets(
                [request], request_timeout=self._timeout
            )[group].result()
        except KafkaException as exc:
            err = kafka_error(exc)
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

    def list_groups(self) -> list[str]:
        self._check_open()
        try:
            result = self._client.list_consumer_groups(request_timeout=self._timeout).result()
        except KafkaException as exc:
            self._fail(exc, "listing consumer groups")
        return sorted(g.group_id for g in result.valid)

    def group_members(self, group: str) -> list[GroupMember]:
        self._check_open()
        try:
            found = self._client.describe_consumer_groups([group], request_timeout=self._timeout)[
                group
            ].result()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []
            self._fail(exc, f"describing group {group!r}")
        return sorted(
            (
                GroupMember(
                    m.member_id,
                    f"{m.client_id}@{m.host}",
                    frozenset(
                        TopicPartition(tp.topic, tp.partition)
                        for tp in (m.assignment.topic_partitions if m.assignment else [])
                    ),
                )
                for m in found.members or []
            ),
            key=lambda m: m.member_id,
        )

    def reset_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        live = self.group_members(group)
        if live:
            raise GroupBusy(_busy(group, len(live)))
        request = ConsumerGroupTopicPartitions(
            group, [_RdPartition(tp.topic, tp.partition, int(o)) for tp, o in offsets.items()]
        )
        try:
            result = self._client.alter_consumer_group_offsets(
                [request], request_timeout=self._timeout
            )[group].result()
        except KafkaException as exc:
            err = kafka_error(exc)
            # The broker refuses too when a member joined since the check above.
            if err is not None and err.code() in (
                KafkaError.UNKNOWN_MEMBER_ID,
                KafkaError.REBALANCE_IN_PROGRESS,
            ):
                raise GroupBusy(_busy(group, 1)) from exc
            self._fail(exc, f"resetting the offsets of group {group!r}")
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise BrokerError(
                    f"resetting {tp.topic}[{tp.partition}] of group {group!r} failed: "
                    f"{tp.error.str()}"
                )

    def close(self) -> None:
        self._closed = True


def _policy(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _busy(group: str, members: int) -> str:
    return (
        f"group {group!r} has {members} live member(s); stop its consumers (every process of "
        "the service) before resetting its offsets, so none commits over the reset"
    )
