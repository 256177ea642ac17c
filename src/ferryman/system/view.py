"""The system view: every declared service, every topic they use, and who sends and consumes.

A topic may be declared in several places (each service's own module); the view keeps each
service's declaration, so rules can compare them, and picks the owner's as the topic's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ferryman.service.core import Service, TopicUse
from ferryman.topics import EntityTopic, EventTopic, RequestTopic, Topic

SENDING = ("produces", "requests")


@dataclass(frozen=True, slots=True)
class Use:
    """One service's use of one topic, with that service's declaration of it."""

    service: str
    group: str
    role: str
    topic: Topic[Any]
    handler: str = ""
    batch: int | None = None
    keeps_state: bool = False

    @property
    def sends(self) -> bool:
        return self.role in SENDING


@dataclass
class TopicView:
    """A topic of the system: its uses by every service, and the declaration that owns it."""

    name: str
    uses: list[Use] = field(default_factory=list)

    @property
    def owner_use(self) -> Use:
        """The use whose declaration is the topic's: the responder's for a request topic, the
        producer's for the others, else the first one seen."""
        owners = self.responders if self.kind == "request" else self.producers
        return (owners or self.uses)[0]

    @property
    def topic(self) -> Topic[Any]:
        return self.owner_use.topic

    @property
    def kind(self) -> str:
        return kind_of(self.uses[0].topic)

    @property
    def producers(self) -> list[Use]:
        return [u for u in self.uses if u.role == "produces"]

    @property
    def requesters(self) -> list[Use]:
        return [u for u in self.uses if u.role == "requests"]

    @property
    def responders(self) -> list[Use]:
        return [u for u in self.uses if u.role == "responds"]

    @property
    def consumers(self) -> list[Use]:
        return [u for u in self.uses if not u.sends]


def kind_of(topic: Topic[Any]) -> str:
    """``entity``, ``event`` or ``request``."""
    if isinstance(topic, EntityTopic):
        return "entity"
    if isinstance(topic, RequestTopic):
        return "request"
    if isinstance(topic, EventTopic):
        return "event"
    return "topic"


@dataclass
class System:
    """Services and the topics they use, in the order they were given."""

    services: list[Service]
    topics: dict[str, TopicView]

    @classmethod
    def of(cls, services: Iterable[Service]) -> System:
        listed = list(dict.fromkeys(services))
        topics: dict[str, TopicView] = {}
        for svc in listed:
            for use in svc.uses():
                view = topics.setdefault(use.topic.name, TopicView(use.topic.name))
                view.uses.append(_use(svc, use))
        return cls(listed, dict(sorted(topics.items())))

    def uses_of(self, service: str) -> list[Use]:
        return [u for t in self.topics.values() for u in t.uses if u.service == service]


def _use(svc: Service, use: TopicUse) -> Use:
    return Use(
        svc.name,
        svc.group,
        use.role,
        use.topic,
        use.handler,
        use.batch,
        use.keeps_state,
    )
