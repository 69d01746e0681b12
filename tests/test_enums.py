"""Contract enums under short names (``parley._enums.EnumNames``), and every map built with it:
each value of each contract enum must round-trip, so a value added to a contract cannot
silently miss a map, a ``StrEnum`` column or a ``Literal`` of the SDK."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, get_args

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import code_pb2

import ai._agent_timeline
import ai._mapper
import ai._models
import control._mapper
import control._models
import parley
import parley._ai
import parley.cli
import parley.room
import sfu._publisher
from parley._enums import EnumNames
from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import resources_pb2 as ai_res
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import resources_pb2 as control_res
from parley.server import db
from parley.sfu.v1 import resources_pb2 as sfu_res

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper


def _named_values(enum: _EnumTypeWrapper[Any]) -> list[int]:
    return [value.number for value in enum.DESCRIPTOR.values if value.number != 0]


# -- the helper ------------------------------------------------------------------------------


def test_short_names_both_ways_in_the_contracts_order() -> None:
    roles = EnumNames(control_res.Role)
    assert roles.prefix == "ROLE_"
    assert list(roles.values.items()) == [
        ("member", control_res.ROLE_MEMBER),
        ("administrator", control_res.ROLE_ADMINISTRATOR),
        ("owner", control_res.ROLE_OWNER),
    ]
    assert roles.value("owner") == control_res.ROLE_OWNER
    assert roles.name(control_res.ROLE_OWNER) == "owner"
    assert dict(roles.names) == {v: k for k, v in roles.values.items()}
    assert repr(roles) == "EnumNames(parley.control.v1.Role: member, administrator, owner)"
    # A prefix of several words.
    assert EnumNames(control_res.TrackSource).value("screen_share_audio") == control_res.TRACK_SOURCE_SCREEN_SHARE_AUDIO


def test_unspecified_and_unknown_values_have_no_name() -> None:
    roles = EnumNames(control_res.Role)
    assert "unspecified" not in roles.values
    with pytest.raises(KeyError):
        roles.name(control_res.ROLE_UNSPECIFIED)
    with pytest.raises(KeyError):
        roles.name(99)
    with pytest.raises(KeyError):
        roles.value("superuser")


def test_maps_are_read_only() -> None:
    roles = EnumNames(control_res.Role)
    with pytest.raises(TypeError):
        roles.values["superuser"] = 4  # type: ignore[index]
    with pytest.raises(TypeError):
        roles.names[4] = "superuser"  # type: ignore[index]


def test_a_str_enum_gives_the_names() -> None:
    class Role(StrEnum):
        MEMBER = "m"
        ADMINISTRATOR = "a"
        OWNER = "o"

    roles = EnumNames(control_res.Role, Role)
    assert roles.name(control_res.ROLE_OWNER) is Role.OWNER
    assert roles.value(Role.ADMINISTRATOR) == control_res.ROLE_ADMINISTRATOR
    assert roles.values["m"] == control_res.ROLE_MEMBER  # type: ignore[index]  # a stored string finds its member


def test_a_str_enum_that_misses_or_adds_a_value_is_refused() -> None:
    class Missing(StrEnum):
        MEMBER = "member"
        OWNER = "owner"

    with pytest.raises(ValueError, match=r"values without a member \['ADMINISTRATOR'\]"):
        EnumNames(control_res.Role, Missing)

    class Extra(StrEnum):
        MEMBER = "member"
        ADMINISTRATOR = "administrator"
        OWNER = "owner"
        GUEST = "guest"

    with pytest.raises(ValueError, match=r"members without a value \['GUEST'\]"):
        EnumNames(control_res.Role, Extra)


def test_an_enum_without_an_unspecified_zero_is_refused() -> None:
    # google.rpc.Code's zero is OK: there is no prefix to read.
    with pytest.raises(ValueError, match="UNSPECIFIED"):
        EnumNames(code_pb2.Code)


def test_a_str_enum_column_stores_the_value_and_reads_the_member() -> None:
    class Role(StrEnum):
        OWNER = "owner"
        MEMBER = "member"

    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("role", db.StrEnumColumn(Role, 16)))
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(table.insert(), [{"role": Role.OWNER}, {"role": "member"}])
        assert connection.execute(sa.text("SELECT role FROM t")).scalars().all() == ["owner", "member"]
        read = connection.execute(sa.select(table.c.role)).scalars().all()
        assert read == [Role.OWNER, Role.MEMBER] and all(type(r) is Role for r in read)
        assert connection.execute(sa.select(table).where(table.c.role == Role.MEMBER)).scalars().all() == [Role.MEMBER]
        with pytest.raises(sa.exc.StatementError, match="'admin' is not a valid"):
            connection.execute(table.insert(), [{"role": "admin"}])
    engine.dispose()


# -- every map of a contract enum ------------------------------------------------------------

_control, _ai, _kinds = control._mapper, ai._mapper, parley.room.KINDS
MAPS = [
    pytest.param(control_res.AccessLevel, _control.ACCESS_LEVELS.values, _control.ACCESS_LEVEL_NAMES, id="access"),
    pytest.param(control_res.Role, _control.ROLES.values, _control.ROLE_NAMES, id="roles"),
    pytest.param(control_res.LobbyEntryState, _control.LOBBY_STATES.values, _control.LOBBY_STATES.names, id="lobby"),
    pytest.param(
        meeting_pb.ParticipantState,
        _control.PARTICIPANT_STATES.values,
        _control.PARTICIPANT_STATES.names,
        id="participant-states",
    ),
    pytest.param(control_res.TrackSource, parley.TRACK_SOURCE_VALUES, parley.TRACK_SOURCE_NAMES, id="sources"),
    pytest.param(ai_res.JobState, _ai.JOB_STATES.values, _ai.JOB_STATES.names, id="job-states"),
    pytest.param(agent_pb.MeetingEventType, _ai.MEETING_EVENTS.values, _ai.MEETING_EVENTS.names, id="meeting-events"),
    pytest.param(
        transcription_pb.TranscriptFormat,
        parley._ai.EXPORT_FORMATS.values,
        parley._ai.EXPORT_FORMATS.names,
        id="formats",
    ),
    pytest.param(sfu_res.TrackKind, _kinds, {v: k for k, v in _kinds.items()}, id="room-client-kinds"),
    pytest.param(
        sfu_res.TrackKind, sfu._publisher.TRACK_KINDS.values, sfu._publisher.TRACK_KINDS.names, id="sfu-kinds"
    ),
    pytest.param(control_res.AccessLevel, parley.cli._ACCESS.values, parley.cli._ACCESS.names, id="cli-access"),
]


@pytest.mark.parametrize(("enum", "values", "names"), MAPS)
def test_every_contract_value_round_trips(
    enum: _EnumTypeWrapper[Any], values: Mapping[Any, int], names: Mapping[int, Any]
) -> None:
    for number in _named_values(enum):
        assert values[names[number]] == number, enum.Name(number)
    assert sorted(values.values()) == sorted(_named_values(enum))
    assert sorted(names) == sorted(_named_values(enum))


# What the databases hold today: these strings are data, and must not change with the code.
STORED = [
    (control._models.AccessLevel, control_res.AccessLevel, ["public", "trusted", "restricted"]),
    (control._models.Role, control_res.Role, ["member", "administrator", "owner"]),
    (control._models.LobbyState, control_res.LobbyEntryState, ["waiting", "accepted", "denied"]),
    (control._models.ParticipantState, meeting_pb.ParticipantState, ["active", "left", "aborted"]),
    (ai._models.JobState, ai_res.JobState, ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]),
]


@pytest.mark.parametrize(("column", "enum", "stored"), STORED, ids=[s[0].__name__ for s in STORED])
def test_stored_names_are_unchanged_and_cover_the_contract(
    column: type[StrEnum], enum: _EnumTypeWrapper[Any], stored: list[str]
) -> None:
    assert [member.value for member in column] == stored
    names = EnumNames(enum, column)
    assert [names.name(number).value for number in _named_values(enum)] == stored


def test_the_timeline_event_types_are_the_contracts_names() -> None:
    assert list(ai._agent_timeline.EVENT_TYPES) == list(ai._mapper.MEETING_EVENTS.values)


def test_the_sdk_literals_are_the_contracts_names() -> None:
    assert list(get_args(parley.TrackSourceName)) == list(EnumNames(control_res.TrackSource).values)
    assert get_args(parley.TrackSourceName) == parley.TRACK_SOURCES
    assert sorted(get_args(parley._ai.ExportFormat)) == sorted(EnumNames(transcription_pb.TranscriptFormat).values)
    assert list(get_args(parley.RecordingModeName)) == list(EnumNames(recording_pb.RecordingMode).values)


def test_every_track_source_has_a_kind() -> None:
    assert sorted(sfu._publisher.SOURCE_KINDS) == _named_values(control_res.TrackSource)
    assert set(sfu._publisher.SOURCE_KINDS.values()) <= set(_named_values(sfu_res.TrackKind))


def test_grpc_status_codes_are_named_as_google_rpc_codes() -> None:
    """The AI service stores a failed job's ``grpc.StatusCode`` by name and answers it as a
    ``google.rpc.Code`` of that name."""
    for code in grpc.StatusCode:
        assert code_pb2.Code.Value(code.name) == code.value[0], code
