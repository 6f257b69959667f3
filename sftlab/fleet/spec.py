"""What a lab fleet looks like and how each device misbehaves, as validated data.

A lab is described by a `LabSpec` (YAML or CLI flags): how many FTDs, which named scenarios, and per-device
overrides. Scenarios are functions from the device names to per-device knob overrides; they compose in order
and explicit per-device overrides win. Everything is checked when loaded: an unknown key, an unknown scenario
or a knob on the wrong kind of device is a load error that names the file and the field, because a typo in a
test's lab (unicon's `nwe_state`) must not silently become the default behaviour.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

PRIMARY = "fmc-primary"
SECONDARY = "fmc-secondary"
JUMP = "jump-1"
FMC_NAMES = (PRIMARY, SECONDARY)

Direct = Literal["open", "refuse", "drop"]
Sudo = Literal["password", "lecture", "cached"]
Home = Literal["/home/admin", "/Volume/home/admin"]
Restart = Literal["normal", "drop_once"]
CaFormat = Literal["v3", "v1"]


class LabSpecError(ValueError):
    """A lab spec that cannot be used; the message names the source, the field and the fix."""


@dataclass(frozen=True)
class StartupLimits:
    """OpenSSH's `MaxStartups start:rate:full`: how sshd sheds new connections while others are still
    unauthenticated. Every device here runs sshd with the default, so the lab does too: a client that opens
    many logins at once through one jump server meets the drops a real one would."""

    start: int
    rate: int
    full: int

    @classmethod
    def parse(cls, text: str) -> StartupLimits:
        """`start:rate:full`; ValueError naming the fix, with sshd's own bounds (it refuses to start on
        anything else). sshd's one-number form is not taken: YAML reads some unquoted `a:b:c` as one
        base-60 number, which would pass for it."""
        fix = "give start:rate:full as sshd_config does, e.g. 10:30:100 (the default)"
        parts = text.split(":")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(f"{text!r} is not a MaxStartups value; {fix}")
        start, rate, full = (int(part) for part in parts)
        if not (0 < start <= full and 1 <= rate <= 100):
            raise ValueError(f"{text!r}: MaxStartups needs 1 <= start <= full and rate from 1 to 100; {fix}")
        return cls(start, rate, full)

    def drop_percent(self, pending: int) -> int:
        """The chance, in percent, that sshd drops a new connection while `pending` others are still
        unauthenticated (sshd.c, should_drop_connection: integer arithmetic, as there)."""
        if pending < self.start:
            return 0
        if pending >= self.full or self.rate == 100:
            return 100
        return self.rate + (100 - self.rate) * (pending - self.start) // (self.full - self.start)


def _max_startups(value: object) -> str:
    if not isinstance(value, str):
        # YAML made a number of it: `max_startups: 3:30:4` is 12604 in YAML 1.1. A ValueError, as pydantic
        # reports only that (not a TypeError) as the field's error.
        raise ValueError(  # noqa: TRY004
            f"{value!r} is not a MaxStartups value; quote it: '10:30:100' (start:rate:full)"
        )
    StartupLimits.parse(value)
    return value


MaxStartups = Annotated[str, BeforeValidator(_max_startups)]


class Knobs(BaseModel):
    """How one device behaves. Every field has the device-facts section 12 default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tunnel: Literal["up", "down"] = "up"
    direct: Direct = "open"
    via_jump: bool = True
    wrong_password: bool = False
    lands_in: Literal["clish", "bash"] = "clish"
    last_login: bool = False
    sudo: Sudo = "password"
    home: Home | None = None
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    drop_after_bytes: Annotated[int, Field(gt=0)] | None = None
    host_key_changed: bool = False
    ca_days_left: int | None = None
    #: `drop_once`: the device's first `pmtool restartbyid sftunnel` cuts its SSH connections before anything
    #: restarts (a connection lost between the write and the restart); later restarts work.
    restart: Restart = "normal"
    #: sshd's `MaxStartups` (`StartupLimits`): new connections past it are closed before the SSH banner.
    max_startups: MaxStartups = "10:30:100"
    #: FMCs only: `v1` makes the InternalCA an X.509 v1 certificate with serial 0 and no extensions, as
    #: `openssl x509 -req -set_serial 0` makes it (device-facts 6.1, 12), before and after generate_certs.pl.
    ca_format: CaFormat = "v3"
    #: FMCs only: the REST API's access-token lifetime, and its rate limit (requests per user per window).
    rest_token_ttl_s: Annotated[float, Field(gt=0)] = 1800.0
    rest_rate_limit: Annotated[int, Field(ge=1)] = 120
    rest_rate_window_s: Annotated[float, Field(gt=0)] = 60.0
    #: FMCs only: whether a 429 carries `Retry-After` (whether a real FMC sends it is not documented).
    rest_retry_after: bool = False


class KnobOverrides(BaseModel):
    """A partial `Knobs`: only the fields a scenario or a spec sets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tunnel: Literal["up", "down"] | None = None
    direct: Direct | None = None
    via_jump: bool | None = None
    wrong_password: bool | None = None
    lands_in: Literal["clish", "bash"] | None = None
    last_login: bool | None = None
    sudo: Sudo | None = None
    home: Home | None = None
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None
    drop_after_bytes: Annotated[int, Field(gt=0)] | None = None
    host_key_changed: bool | None = None
    ca_days_left: Annotated[int, Field(ge=-36_500, le=36_500)] | None = None
    restart: Restart | None = None
    max_startups: MaxStartups | None = None
    ca_format: CaFormat | None = None
    rest_token_ttl_s: Annotated[float, Field(gt=0)] | None = None
    rest_rate_limit: Annotated[int, Field(ge=1)] | None = None
    rest_rate_window_s: Annotated[float, Field(gt=0)] | None = None
    rest_retry_after: bool | None = None

    def apply(self, knobs: Knobs) -> Knobs:
        return knobs.model_copy(update=self.model_dump(exclude_none=True))


Overrides = dict[str, KnobOverrides]


def _healthy(ftds: Sequence[str]) -> Overrides:
    return {}


def _expired(ftds: Sequence[str]) -> Overrides:
    """Both CAs expired a month ago; the tunnels were made before that and are still up."""
    return {name: KnobOverrides(ca_days_left=-30) for name in FMC_NAMES}


def _mixed(ftds: Sequence[str]) -> Overrides:
    """Some tunnels down; one FTD reachable only through the jump server; one reachable by no route."""
    if len(ftds) < 4:
        raise LabSpecError("scenario 'mixed' needs at least 4 FTDs (use --ftds 4 or more)")
    return {
        ftds[1]: KnobOverrides(tunnel="down"),
        ftds[2]: KnobOverrides(tunnel="down", direct="refuse", via_jump=True),
        ftds[3]: KnobOverrides(tunnel="down", direct="drop", via_jump=False),
    }


SCENARIOS: Mapping[str, Callable[[Sequence[str]], Overrides]] = {
    "healthy": _healthy,
    "expired": _expired,
    "mixed": _mixed,
}


class LabSpec(BaseModel):
    """The whole lab: fleet size, scenarios, per-device overrides and timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ftds: Annotated[int, Field(ge=1, le=2000)] = 4
    scenarios: tuple[str, ...] = ("healthy",)
    network: str = "127.77.0.0/16"
    password: str | None = None
    jump_password: str | None = None
    retry_interval_s: Annotated[float, Field(gt=0)] = 44.0
    heartbeat_interval_s: Annotated[float, Field(gt=0)] = 10.0
    devices: dict[str, KnobOverrides] = Field(default_factory=dict)

    @field_validator("scenarios", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("scenarios")
    @classmethod
    def _known_scenarios(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in SCENARIOS:
                raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        return value

    @field_validator("network")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not (net.version == 4 and net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))):
            raise ValueError(f"{value} is not inside 127.0.0.0/8; the lab uses loopback addresses only")
        if net.num_addresses < 256:
            raise ValueError(f"{value} is too small; give the lab at least a /24")
        return value

    @model_validator(mode="after")
    def _devices_exist(self) -> LabSpec:
        names = set(device_names(self.ftds))
        for name, over in self.devices.items():
            if name not in names:
                raise ValueError(
                    f"devices.{name}: no such device; names are {PRIMARY}, {SECONDARY}, {JUMP}, "
                    f"ftd-001..ftd-{self.ftds:03d}"
                )
            for knob in ("ca_days_left", "ca_format"):
                if getattr(over, knob) is not None and name not in FMC_NAMES:
                    raise ValueError(f"devices.{name}.{knob}: only FMCs hold a CA; set it on an FMC")
            for knob in _REST_KNOBS:
                if getattr(over, knob) is not None and name not in FMC_NAMES:
                    raise ValueError(f"devices.{name}.{knob}: only FMCs serve the REST API; set it on an FMC")
        return self


_REST_KNOBS = ("rest_token_ttl_s", "rest_rate_limit", "rest_rate_window_s", "rest_retry_after")


def ftd_names(count: int) -> list[str]:
    return [f"ftd-{i:03d}" for i in range(1, count + 1)]


def device_names(ftds: int) -> list[str]:
    return [PRIMARY, SECONDARY, JUMP, *ftd_names(ftds)]


@dataclass(frozen=True)
class ResolvedLab:
    """A spec with its scenarios applied: the knobs of every device, by name."""

    spec: LabSpec
    knobs: Mapping[str, Knobs]

    @property
    def predates_expiry(self) -> bool:
        """Whether any CA is expired at start, so the first tunnels are made as if before the expiry."""
        return any((k.ca_days_left or 0) < 0 for k in self.knobs.values())


def resolve(spec: LabSpec) -> ResolvedLab:
    """Apply the spec's scenarios in order, then its per-device overrides."""
    names = device_names(spec.ftds)
    knobs = {name: Knobs(ca_days_left=3649 if name in FMC_NAMES else None) for name in names}
    layers: list[Overrides] = [SCENARIOS[s](ftd_names(spec.ftds)) for s in spec.scenarios]
    layers.append(dict(spec.devices))
    for layer in layers:
        for name, over in layer.items():
            knobs[name] = over.apply(knobs[name])
    return ResolvedLab(spec=spec, knobs=knobs)


def load_spec(text: str, *, source: str) -> LabSpec:
    """Parse a lab spec from YAML; every problem becomes one `LabSpecError` naming `source`."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise LabSpecError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LabSpecError(f"{source}: a lab spec is a mapping (keys: {', '.join(LabSpec.model_fields)})")
    return build_spec(data, source=source)


def build_spec(data: Mapping[str, object], *, source: str) -> LabSpec:
    """Validate a mapping (from YAML or CLI flags) into a `LabSpec`."""
    try:
        return LabSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise LabSpecError(f"{source}: {problems}") from None
