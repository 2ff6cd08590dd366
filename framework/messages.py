"""Message contracts: pydantic models with a stable, overridable type name."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """Base of every message. `type_name` (default: the class name) is its wire identity.

    Override `type_name` to rename a class without breaking the contract on the wire.
    """

    model_config = ConfigDict(frozen=True)

    type_name: ClassVar[str] = "Message"
    # the field whose value orders this message (framework.consume.ordering): senders put it in the
    # `fw-order-key` header and route by its bucket; workers with `ordered_by` require it
    ordered_by: ClassVar[str | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        if cls.ordered_by is not None and cls.ordered_by not in cls.model_fields:
            raise TypeError(
                f"{cls.__name__}.ordered_by is {cls.ordered_by!r}, which is not one of its "
                f"fields ({', '.join(cls.model_fields) or 'none'}): name the field whose "
                "value orders the messages, e.g. a customer id"
            )


class Command(Message):
    """Asks exactly one service to do something; routed to the one queue that handles it."""


class Event(Message):
    """States that something happened; delivered to every queue subscribed to it."""


_BASES: tuple[type[Message], ...] = (Message, Command, Event)


def message_types() -> dict[str, type[Message]]:
    """All concrete message classes currently imported, by type name.

    Derived from the class hierarchy on each call, so there is no registry to keep in sync.
    """
    found: dict[str, type[Message]] = {}
    pending: list[type[Message]] = [Message]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls not in _BASES:
            found.setdefault(cls.type_name, cls)
    return found


def is_command(cls: type[Message]) -> bool:
    """Commands go through the commands exchange; everything else is an event."""
    return issubclass(cls, Command)


def require_kind(message: Message, *, command: bool, verb: str) -> None:
    """Reject an event given to `send`/`request` or a command given to `publish`."""
    if is_command(type(message)) == command:
        return
    wanted, other = ("a Command", "publish()") if command else ("an Event", "send()")
    raise TypeError(f"{verb}() takes {wanted}; use {other} for {type(message).__name__}")
