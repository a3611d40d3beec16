"""peewee models of everything the server stores (DESIGN §4; OTS's tables, reference/ots.md §2.3).

No database is bound at import time (STYLE rule 2): whoever opens one binds it with
``database.bind(MODELS)``. Times are timezone-aware UTC in Python and naive UTC in the database
(:class:`UtcDateTimeField`), so SQLite and PostgreSQL store, sort and compare them alike.

Items the map shows (EUDs, markers, range-and-bearing lines, video streams, CASEVAC requests)
have one row per uid, upserted; what happens over time (the CoT log, points, chat messages,
alerts) is appended and pruned by age. The API owns users, groups, certificates, enrollment
tokens and data packages; the store stage only creates their tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from otszmq.errors import StoreError


class UtcDateTimeField(DateTimeField):
    """A timestamp that is timezone-aware UTC in Python and naive UTC in the database.

    NOTE: written as fixed-width text ('YYYY-MM-DD HH:MM:SS.ffffff'): SQLite compares it as text,
    so every value must have the same width (Python's default adapter drops a zero fraction);
    PostgreSQL casts the literal to its ``timestamp`` column type.
    """

    def db_value(self, value: Any) -> Any:
        if not isinstance(value, datetime):
            return value  # None, or text already in the stored form
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise StoreError(f"{self.name}: naive datetime {value!r}; times must be UTC-aware")
            value = value.astimezone(UTC)
        # PERF: isoformat is ~10x faster than strftime("%Y-%m-%d %H:%M:%S.%f"), same text.
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def python_value(self, value: Any) -> Any:
        if isinstance(value, str):  # SQLite hands the text back
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class BaseModel(Model):
    class Meta:
        database = None  # bound at run time: database.bind(MODELS)
        legacy_table_names = False  # RangeBearingLine -> range_bearing_line


class SchemaVersion(BaseModel):
    """One row per applied migration (see otszmq.store.migrations)."""

    version = IntegerField(primary_key=True)
    description = CharField()
    applied_at = UtcDateTimeField()


# -- what EUDs report -----------------------------------------------------------------------


class Eud(BaseModel):
    """An end-user device, upserted from its own position reports."""

    uid = CharField(unique=True)
    callsign = CharField(null=True, index=True)
    device = CharField(null=True)
    os = CharField(null=True)
    platform = CharField(null=True)
    version = CharField(null=True)
    phone = CharField(null=True)
    endpoint = CharField(null=True)
    team = CharField(null=True)  # __group@name: the ATAK team colour
    role = CharField(null=True)  # __group@role
    last_event_time = UtcDateTimeField(null=True)
    last_status = CharField(default="Connected")  # Connected | Disconnected
    last_lat = FloatField(null=True)
    last_lon = FloatField(null=True)
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class CotLog(BaseModel):
    """Every stored event, as received; ``xml`` only when store_raw_xml is on."""

    uid = CharField(index=True)
    # NOTE: no index on type: the API's type filter (a CoT type prefix, SUBSTR) cannot use one,
    # and it cost every write ~2 us (schema version 4 drops it).
    type = CharField()
    how = CharField()
    time = UtcDateTimeField(index=True)
    start = UtcDateTimeField()
    stale = UtcDateTimeField()
    sender_uid = CharField(null=True, index=True)
    callsign = CharField(null=True)
    missions = CharField(null=True)  # <dest mission> names, comma-separated
    xml = TextField(null=True)
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)

    class Meta:
        table_name = "cot"


class Point(BaseModel):
    """A position: one per event that carried a real one (not 0,0, not NaN)."""

    uid = CharField()
    type = CharField()
    sender_uid = CharField(null=True)
    lat = FloatField()
    lon = FloatField()
    hae = FloatField(null=True)
    ce = FloatField(null=True)
    le = FloatField(null=True)
    course = FloatField(null=True)
    speed = FloatField(null=True)
    battery = FloatField(null=True)
    time = UtcDateTimeField(index=True)
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)

    class Meta:
        indexes = ((("uid", "time"), False),)  # a track: one uid's points in time order


class ChatRoom(BaseModel):
    room_id = CharField(unique=True)  # __chat@id: a room name, a group id, or a peer's uid
    name = CharField()
    parent = CharField(null=True)  # RootContactGroup | TeamGroups | UserGroups
    group_owner = BooleanField(null=True)


class ChatRoomMember(BaseModel):
    room = ForeignKeyField(ChatRoom, field=ChatRoom.room_id, on_delete="CASCADE")
    uid = CharField()

    class Meta:
        indexes = ((("room", "uid"), True),)


class GeoChat(BaseModel):
    uid = CharField(unique=True)  # the event uid: a re-sent message is stored once
    message_id = CharField(null=True)
    room = ForeignKeyField(ChatRoom, field=ChatRoom.room_id, on_delete="CASCADE")
    sender_uid = CharField(null=True, index=True)
    sender_callsign = CharField(null=True)
    text = TextField(null=True)
    time = UtcDateTimeField(index=True)
    lat = FloatField(null=True)
    lon = FloatField(null=True)
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class Alert(BaseModel):
    """An emergency: 911, ring the bell, in contact, geo-fence breach; open until cancelled."""

    uid = CharField(index=True)
    sender_uid = CharField(null=True)
    callsign = CharField(null=True)
    alert_type = CharField()
    start_time = UtcDateTimeField()
    cancel_time = UtcDateTimeField(null=True)
    lat = FloatField(null=True)
    lon = FloatField(null=True)
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class Casevac(BaseModel):
    """A 9-line MEDEVAC request (the common fields of ATAK's form; zMIST entries as JSON)."""

    uid = CharField(unique=True)
    sender_uid = CharField(null=True)
    callsign = CharField(null=True)
    time = UtcDateTimeField()
    lat = FloatField(null=True)
    lon = FloatField(null=True)
    title = CharField(null=True)
    casevac = BooleanField(null=True)  # true: CASEVAC (any vehicle), false: MEDEVAC
    freq = CharField(null=True)  # line 2
    urgent = IntegerField(null=True)  # line 3: patients by precedence
    priority = IntegerField(null=True)
    routine = IntegerField(null=True)
    hoist = BooleanField(null=True)  # line 4: special equipment
    extraction_equipment = BooleanField(null=True)
    ventilator = BooleanField(null=True)
    equipment_other = BooleanField(null=True)
    equipment_detail = CharField(null=True)
    litter = IntegerField(null=True)  # line 5: patients by type
    ambulatory = IntegerField(null=True)
    security = IntegerField(null=True)  # line 6: security at the pick-up site
    hlz_marking = IntegerField(null=True)  # line 7: method of marking
    hlz_other = CharField(null=True)
    us_military = IntegerField(null=True)  # line 8: nationality and status
    us_civilian = IntegerField(null=True)
    nonus_military = IntegerField(null=True)
    nonus_civilian = IntegerField(null=True)
    epw = IntegerField(null=True)
    child = IntegerField(null=True)
    terrain_slope = BooleanField(null=True)  # line 9: terrain and obstacles
    terrain_rough = BooleanField(null=True)
    terrain_loose = BooleanField(null=True)
    terrain_other = BooleanField(null=True)
    terrain_slope_dir = CharField(null=True)
    terrain_other_detail = CharField(null=True)
    marked_by = CharField(null=True)
    winds_are_from = CharField(null=True)
    friendlies = CharField(null=True)
    enemy = CharField(null=True)
    hlz_remarks = TextField(null=True)
    medline_remarks = TextField(null=True)
    zmist = TextField(null=True)  # JSON list of {title, z, m, i, s, t}
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class Marker(BaseModel):
    """A map item placed by a user (2525 atom, spot, waypoint, sensor ...), upserted by uid."""

    uid = CharField(unique=True)
    type = CharField()
    callsign = CharField(null=True)
    affiliation = CharField(null=True)  # from the CoT type (otszmq.store.symbols)
    battle_dimension = CharField(null=True)
    mil_std_2525c = CharField(null=True)  # the SIDC derived from the type
    iconset_path = CharField(null=True)
    color_argb = IntegerField(null=True)
    color_hex = CharField(null=True)  # "#rrggbb" of color_argb (alpha dropped), for web maps
    parent_uid = CharField(null=True)
    parent_callsign = CharField(null=True)
    relation = CharField(null=True)
    readiness = BooleanField(null=True)
    remarks = TextField(null=True)
    sender_uid = CharField(null=True)
    lat = FloatField(null=True)
    lon = FloatField(null=True)
    hae = FloatField(null=True)
    time = UtcDateTimeField()
    stale = UtcDateTimeField()
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class RangeBearingLine(BaseModel):
    uid = CharField(unique=True)
    callsign = CharField(null=True)
    sender_uid = CharField(null=True)
    range = FloatField(null=True)  # metres
    bearing = FloatField(null=True)  # degrees
    inclination = FloatField(null=True)
    range_units = IntegerField(null=True)  # ATAK's display units, as sent
    bearing_units = IntegerField(null=True)
    north_ref = IntegerField(null=True)
    color = IntegerField(null=True)
    stroke_color = IntegerField(null=True)
    stroke_weight = FloatField(null=True)
    labels_on = BooleanField(null=True)
    anchor_lat = FloatField(null=True)
    anchor_lon = FloatField(null=True)
    end_lat = FloatField(null=True)  # computed: great circle from the anchor
    end_lon = FloatField(null=True)
    time = UtcDateTimeField()
    stale = UtcDateTimeField()
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


class VideoStream(BaseModel):
    uid = CharField(unique=True)
    name = CharField(null=True)  # ConnectionEntry@alias ("alias" would hide Model.alias())
    protocol = CharField(null=True)
    address = CharField(null=True)
    port = IntegerField(null=True)
    path = CharField(null=True)
    url = TextField(null=True)  # __video@url (older ATAK) or built from the parts
    rover_port = IntegerField(null=True)
    rtsp_reliable = BooleanField(null=True)
    ignore_klv = BooleanField(null=True)
    network_timeout = IntegerField(null=True)  # milliseconds
    buffer_time = IntegerField(null=True)  # milliseconds
    sender_uid = CharField(null=True)
    time = UtcDateTimeField()
    groups = TextField(null=True)  # ",A,B,": the IN groups it was written to (store.groups)


# -- what the API manages ---------------------------------------------------------------------


class DataPackage(BaseModel):
    hash = CharField(unique=True)  # sha256, hex; doubles as the package's uid in Marti
    filename = CharField()
    name = CharField(null=True)
    creator_uid = CharField(null=True)
    submission_user = CharField(null=True)
    submission_time = UtcDateTimeField()
    keywords = TextField(null=True)
    mime_type = CharField(null=True)
    size = BigIntegerField()
    tool = CharField(null=True)
    expiration = UtcDateTimeField(null=True)
    install_on_enrollment = BooleanField(default=False)
    install_on_connection = BooleanField(default=False)


class User(BaseModel):
    username = CharField(unique=True)
    password_hash = CharField(null=True)  # None: certificate-only login
    role = CharField(default="user")  # user | administrator
    active = BooleanField(default=True)
    created_at = UtcDateTimeField()
    last_login = UtcDateTimeField(null=True)


class Group(BaseModel):
    """A TAK channel; every plain-TCP client is in __ANON__."""

    name = CharField(unique=True)
    description = TextField(null=True)
    bitpos = IntegerField(null=True)  # the bit ATAK's group vectors use
    created_at = UtcDateTimeField()


class GroupMembership(BaseModel):
    """IN: the user writes to the group; OUT: the user reads it. ``enabled`` is ATAK's toggle."""

    user = ForeignKeyField(User, on_delete="CASCADE")
    group = ForeignKeyField(Group, on_delete="CASCADE")
    direction = CharField(constraints=[Check("direction IN ('IN', 'OUT')")])
    enabled = BooleanField(default=True)

    class Meta:
        indexes = ((("user", "group", "direction"), True),)


class Certificate(BaseModel):
    """A client certificate this server's CA issued. No private key or password is stored."""

    serial = CharField(unique=True)  # hex
    common_name = CharField(index=True)
    username = CharField(null=True, index=True)
    eud_uid = CharField(null=True)
    fingerprint_sha256 = CharField(null=True)
    not_before = UtcDateTimeField()
    not_after = UtcDateTimeField()
    revoked_at = UtcDateTimeField(null=True)


class EnrollmentToken(BaseModel):
    token_hash = CharField(unique=True)  # never the token itself
    username = CharField(index=True)
    max_uses = IntegerField(null=True)  # None: unlimited
    total_uses = IntegerField(default=0)
    not_before = UtcDateTimeField(null=True)
    expires_at = UtcDateTimeField(null=True)
    disabled = BooleanField(default=False)
    created_at = UtcDateTimeField()


class ApiToken(BaseModel):
    """A login token of the admin API (``POST /api/login``).

    Only the token's SHA-256 is stored: a copy of the database lets nobody log in. Every
    gunicorn worker and every restart sees the same rows, so a logout holds everywhere.
    """

    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE")
    token_hash = CharField(unique=True)
    created_at = UtcDateTimeField()
    expires_at = UtcDateTimeField(index=True)
    last_used = UtcDateTimeField(null=True)


# Creation order: a table comes after the tables its foreign keys point at.
MODELS: Final[tuple[type[BaseModel], ...]] = (
    SchemaVersion, Eud, CotLog, Point, ChatRoom, ChatRoomMember, GeoChat, Alert, Casevac,
    Marker, RangeBearingLine, VideoStream, DataPackage, User, Group, GroupMembership,
    Certificate, EnrollmentToken, ApiToken,
)

__all__ = [
    "MODELS", "Alert", "ApiToken", "BaseModel", "Casevac", "Certificate", "ChatRoom",
    "ChatRoomMember", "CotLog", "DataPackage", "EnrollmentToken", "Eud", "GeoChat", "Group",
    "GroupMembership", "Marker", "Point", "RangeBearingLine", "SchemaVersion", "User",
    "UtcDateTimeField", "VideoStream",
]
