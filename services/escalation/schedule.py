"""On-call schedule: people, team rotations, overrides, and who each escalation tier pages.

Loaded from YAML (`demo/config/oncall.yaml`, format documented in its header).
Design decisions:

- A rotation is anchored, not bounded: participant 0 holds the shift that starts at
  the hand-off time on `start`, and the cycle extends forwards *and backwards* from
  there, so there is never a hole in the schedule because a start date lies in the
  future.
- Rotations whose length is a whole number of days hand off at the configured wall
  time in the team's timezone (09:00 stays 09:00 across a DST change); shorter or
  odd lengths (e.g. 12 h) count elapsed time from the first hand-off.
- An override replaces the rotation's participant while it is in force
  ([start, end)); the last matching override in the file wins.
- Tier roles follow DOMAIN.md and can be remapped per deployment (`escalation:`).
  Team roles (on-call, senior on-call, lead, manager, director) are resolved for
  every team that owns one of the incident's services; organisation roles (VP,
  executives) once. A tier that resolves to nobody pages `organisation.fallback`:
  a page that reaches no human is the one failure an escalation service must not
  have.
- Everything is validated at load time with messages that name the bad entry, so
  a broken schedule stops the service at start-up instead of paging nobody later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AwareDatetime, Field, ValidationError, field_validator, model_validator

from shared.events import Model


class ScheduleError(ValueError):
    """The on-call schedule file is invalid; the message names the offending entry."""


class EscalationRole(StrEnum):
    """Who can be paged, in DOMAIN.md's words."""

    ONCALL = "oncall"
    SENIOR_ONCALL = "senior_oncall"
    TEAM_LEAD = "team_lead"
    ENGINEERING_MANAGER = "engineering_manager"
    DIRECTOR = "director"
    VP_ENGINEERING = "vp_engineering"
    EXECUTIVES = "executives"

    @property
    def wording(self) -> str:
        """Human wording of the role for pages and status updates."""
        return _ROLE_TITLES[self]


_ROLE_TITLES = {
    EscalationRole.ONCALL: "on-call engineer",
    EscalationRole.SENIOR_ONCALL: "senior on-call",
    EscalationRole.TEAM_LEAD: "team lead",
    EscalationRole.ENGINEERING_MANAGER: "engineering manager",
    EscalationRole.DIRECTOR: "director",
    EscalationRole.VP_ENGINEERING: "VP engineering",
    EscalationRole.EXECUTIVES: "executives",
}

DEFAULT_TIER_ROLES: dict[int, tuple[EscalationRole, ...]] = {
    1: (EscalationRole.ONCALL,),
    2: (EscalationRole.SENIOR_ONCALL, EscalationRole.TEAM_LEAD),
    3: (EscalationRole.ENGINEERING_MANAGER, EscalationRole.DIRECTOR),
    4: (EscalationRole.VP_ENGINEERING, EscalationRole.EXECUTIVES),
}

_LENGTH = re.compile(r"^\s*(\d+)\s*([wdhm])\s*$")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
         "m": timedelta(minutes=1)}


def parse_length(raw: str | int) -> timedelta:
    """A rotation length: `7d`, `1w`, `12h`, `90m`, or a bare number of hours."""
    if isinstance(raw, int):
        value = timedelta(hours=raw)
    else:
        match = _LENGTH.match(raw)
        if match is None:
            raise ValueError(f"rotation length {raw!r} is not like 7d, 1w, 12h or 90m")
        value = int(match.group(1)) * _UNIT[match.group(2)]
    if value <= timedelta(0):
        raise ValueError("rotation length must be positive")
    return value


class Person(Model):
    """Someone who can be paged, and where."""

    name: str
    email: str | None = None
    webhook: str | None = Field(None, description="generic webhook URL for this person's pages")
    slack: str | None = None

    def contacts(self, channels: Iterable[str]) -> list[tuple[str, str]]:
        """(channel, address) pairs of this person among the enabled channels."""
        addresses = {"email": self.email, "webhook": self.webhook, "slack": self.slack}
        return [(c, a) for c in channels if (a := addresses.get(c))]


class Rotation(Model):
    """Participants taking turns, each for `length`, handing off at `handoff` local time."""

    participants: tuple[str, ...] = Field(min_length=1)
    length: timedelta
    handoff: time = time(9, 0)
    timezone: str = "UTC"
    start: date

    @field_validator("length", mode="before")
    @classmethod
    def _length(cls, raw: Any) -> Any:
        return parse_length(raw) if isinstance(raw, str | int) else raw

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, raw: str) -> str:
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {raw!r}") from exc
        return raw

    def participant_at(self, at: datetime) -> str:
        """The participant whose shift covers the instant at."""
        tz = ZoneInfo(self.timezone)
        if self.length % timedelta(days=1) == timedelta(0):
            local = at.astimezone(tz)
            shift_day = local.date() if local.time() >= self.handoff else (
                local.date() - timedelta(days=1)
            )
            index = (shift_day - self.start).days // self.length.days
        else:
            first = datetime.combine(self.start, self.handoff, tzinfo=tz)
            index = (at - first) // self.length
        return self.participants[index % len(self.participants)]


class Team(Model):
    """A team's rotations and named roles."""

    oncall: Rotation | None = None
    senior_oncall: Rotation | None = None
    lead: str | None = None
    manager: str | None = None
    director: str | None = None


class Override(Model):
    """Someone covers a team's rotation for a while (holiday swap, sick day)."""

    person: str
    team: str
    rotation: EscalationRole = EscalationRole.ONCALL
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end <= self.start:
            raise ValueError(f"override for {self.person}: end must be after start")
        if self.rotation not in (EscalationRole.ONCALL, EscalationRole.SENIOR_ONCALL):
            raise ValueError("override rotation must be oncall or senior_oncall")
        return self

    def covers(self, team: str, rotation: EscalationRole, at: datetime) -> bool:
        """True when this override is in force for team's rotation at `at`."""
        return self.team == team and self.rotation is rotation and self.start <= at < self.end


class Organisation(Model):
    """Organisation-wide roles and the last-resort responders."""

    director: str | None = None
    vp_engineering: str | None = None
    executives: tuple[str, ...] = ()
    fallback: tuple[str, ...] = Field((), description="paged when a tier resolves to nobody")


class Stakeholders(Model):
    """Where interim status updates and resolution notices are posted."""

    webhook: str | None = None


class Responder(Model):
    """One person paged at a tier, and in which role (for the page's wording)."""

    person: str
    role: str


class OnCallSchedule(Model):
    """The whole schedule file."""

    people: tuple[Person, ...] = ()
    teams: dict[str, Team] = Field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    organisation: Organisation = Organisation()
    stakeholders: Stakeholders = Stakeholders()
    default_team: str | None = Field(None, description="team for uncatalogued services")
    escalation: dict[int, tuple[EscalationRole, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_ROLES)
    )

    @classmethod
    def load(cls, path: str | Path) -> OnCallSchedule:
        """Read and validate a schedule file; raises ScheduleError naming the problem."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ScheduleError(f"cannot read on-call schedule {path}: {exc}") from exc
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, source: str = "<schedule>") -> OnCallSchedule:
        """Validate schedule data; raises ScheduleError naming the problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ScheduleError(f"{source}: {where}: {first['msg']}") from exc

    @model_validator(mode="after")
    def _references(self) -> OnCallSchedule:
        known = {p.name for p in self.people}
        if len(known) != len(self.people):
            raise ValueError("people: names must be unique")
        refs: list[tuple[str, str]] = []
        for name, team in self.teams.items():
            for rot_name in ("oncall", "senior_oncall"):
                rotation: Rotation | None = getattr(team, rot_name)
                if rotation is not None:
                    refs += [(f"teams.{name}.{rot_name}", p) for p in rotation.participants]
            refs += [(f"teams.{name}.{role}", p) for role in ("lead", "manager", "director")
                     if (p := getattr(team, role)) is not None]
        org = self.organisation
        refs += [("organisation.director", p) for p in [org.director] if p]
        refs += [("organisation.vp_engineering", p) for p in [org.vp_engineering] if p]
        refs += [("organisation.executives", p) for p in org.executives]
        refs += [("organisation.fallback", p) for p in org.fallback]
        for i, override in enumerate(self.overrides):
            refs.append((f"overrides.{i}.person", override.person))
            if override.team not in self.teams:
                raise ValueError(f"overrides.{i}: unknown team {override.team!r}")
        for where, person in refs:
            if person not in known:
                raise ValueError(f"{where}: unknown person {person!r}")
        if self.default_team is not None and self.default_team not in self.teams:
            raise ValueError(f"default_team: unknown team {self.default_team!r}")
        if bad := sorted(set(self.escalation) - {1, 2, 3, 4}):
            raise ValueError(f"escalation: tiers must be 1..4, got {bad}")
        return self

    def person(self, name: str) -> Person | None:
        """The person named name, or None."""
        return next((p for p in self.people if p.name == name), None)

    def who_is_on_call(
        self, team: str, at: datetime, rotation: EscalationRole = EscalationRole.ONCALL
    ) -> str | None:
        """The person holding team's rotation at `at`, honouring overrides and hand-offs."""
        for override in reversed(self.overrides):
            if override.covers(team, rotation, at):
                return override.person
        config = self.teams.get(team)
        if config is None:
            return None
        schedule: Rotation | None = (
            config.oncall if rotation is EscalationRole.ONCALL else config.senior_oncall
        )
        return schedule.participant_at(at) if schedule is not None else None

    def owning_teams(self, teams: Iterable[str]) -> list[str]:
        """Known teams among teams (in order), or the default team when none is known."""
        known = list(dict.fromkeys(t for t in teams if t in self.teams))
        if not known and self.default_team is not None:
            known = [self.default_team]
        return known

    def roles_for(self, tier: int) -> tuple[EscalationRole, ...]:
        """The roles paged at tier."""
        return self.escalation.get(tier, DEFAULT_TIER_ROLES.get(tier, ()))

    def responders(self, tier: int, teams: Iterable[str], at: datetime) -> list[Responder]:
        """Everyone paged at tier for an incident owned by teams, at `at` (deduplicated)."""
        owners = self.owning_teams(teams)
        found: dict[str, str] = {}
        for role in self.roles_for(tier):
            for person in self._holders(role, owners, at):
                found.setdefault(person, role.wording)
        if not found:
            found = dict.fromkeys(self.organisation.fallback, "fallback responder")
        return [Responder(person=p, role=r) for p, r in found.items()]

    def _holders(self, role: EscalationRole, teams: list[str], at: datetime) -> list[str]:
        org = self.organisation
        if role is EscalationRole.VP_ENGINEERING:
            return [org.vp_engineering] if org.vp_engineering else []
        if role is EscalationRole.EXECUTIVES:
            return list(org.executives)
        out: list[str] = []
        for name in teams:
            team = self.teams[name]
            holder: str | None
            if role in (EscalationRole.ONCALL, EscalationRole.SENIOR_ONCALL):
                holder = self.who_is_on_call(name, at, role)
            elif role is EscalationRole.TEAM_LEAD:
                holder = team.lead
            elif role is EscalationRole.ENGINEERING_MANAGER:
                holder = team.manager
            else:
                holder = team.director or org.director
            if holder is not None:
                out.append(holder)
        return out
