"""Contract enums under short names, read from their descriptors: ``ROLE_OWNER`` ↔ ``"owner"``.

Every map between a contract enum and the names Parley stores or accepts (roles and access
levels in control's tables, job states in the AI service's, track sources in join tokens,
track kinds as aiortc names them...) is built here from the enum's descriptor, so a value
added to a contract reaches all of them and no hand-written copy drifts.

A value's short name is its name less the enum's prefix (the name of its ``..._UNSPECIFIED = 0``
value less ``UNSPECIFIED``, the style buf lint enforces): lower case, or the value of the
``StrEnum`` member named like it (``Role.OWNER = "owner"`` for ``ROLE_OWNER``,
``JobState.PENDING = "PENDING"`` for ``JOB_STATE_PENDING``). ``..._UNSPECIFIED`` has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

__all__ = ["EnumNames"]

V = TypeVar("V", bound=int)
N = TypeVar("N", bound=str)
E = TypeVar("E", bound=StrEnum)


class EnumNames(Generic[V, N]):
    """The named values of one contract enum, both ways.

    roles = EnumNames(resources_pb2.Role)
    roles.value("owner")                  # resources_pb2.ROLE_OWNER
    roles.name(resources_pb2.ROLE_OWNER)  # "owner"

    Given a ``StrEnum``, its members are the names; its members' names must be exactly the
    enum's short names in upper case (``ValueError`` otherwise, so the two cannot drift).
    """

    __slots__ = ("descriptor_name", "names", "prefix", "values")

    @overload
    def __init__(self: EnumNames[V, str], enum: _EnumTypeWrapper[V]) -> None: ...

    @overload
    def __init__(self: EnumNames[V, E], enum: _EnumTypeWrapper[V], names: type[E]) -> None: ...

    def __init__(self, enum: _EnumTypeWrapper[V], names: type[StrEnum] | None = None) -> None:
        descriptor = enum.DESCRIPTOR
        zero = descriptor.values_by_number.get(0)
        if zero is None or not zero.name.endswith("_UNSPECIFIED"):
            raise ValueError(f"{descriptor.full_name} has no ..._UNSPECIFIED = 0 value to read its prefix from")
        #: The enum's full name, e.g. ``parley.control.v1.Role``.
        self.descriptor_name: str = descriptor.full_name
        #: What every value's name starts with, e.g. ``ROLE_``.
        self.prefix: str = zero.name.removesuffix("UNSPECIFIED")
        short: dict[str, V] = {}
        for value in descriptor.values:
            if value.number == 0:
                continue
            if not value.name.startswith(self.prefix):
                raise ValueError(f"{descriptor.full_name}.{value.name} does not start with {self.prefix}")
            short[value.name.removeprefix(self.prefix)] = cast(V, value.number)
        values: dict[Any, V]
        if names is None:
            values = {name.lower(): number for name, number in short.items()}
        else:
            members = {member.name for member in names}
            if members != set(short):
                raise ValueError(
                    f"{names.__qualname__} does not match {descriptor.full_name}: "
                    f"members without a value {sorted(members - set(short))}, "
                    f"values without a member {sorted(set(short) - members)}"
                )
            values = {names[name]: number for name, number in short.items()}
        #: Short name → contract value (in the contract's order).
        self.values: Mapping[N, V] = MappingProxyType(values)
        #: Contract value → short name.
        self.names: Mapping[V, N] = MappingProxyType({number: name for name, number in values.items()})

    def value(self, name: N) -> V:
        """The contract value of a short name (``KeyError`` for an unknown one)."""
        return self.values[name]

    def name(self, value: int) -> N:
        """The short name of a contract value (``KeyError`` for ``UNSPECIFIED`` or an unknown one)."""
        return self.names[cast(V, value)]

    def __repr__(self) -> str:
        return f"EnumNames({self.descriptor_name}: {', '.join(self.values)})"
