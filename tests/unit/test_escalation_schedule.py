"""On-call schedule: rotations, hand-offs, overrides, tier responders, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.escalation.schedule import (
    EscalationRole,
    OnCallSchedule,
    ScheduleError,
    parse_length,
)

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")


def schedule_data(**overrides: Any) -> dict[str, Any]:
    """A small valid schedule: payments with two rotations, web with one."""
    data: dict[str, Any] = {
        "people": [{"name": n, "email": f"{n}@example.com"} for n in (
            "alice", "carol", "dave", "bob", "erin", "grace", "heidi", "olivia", "sre",
            "frank", "ivan", "xavier", "yara", "zoe")],
        "teams": {
            "payments": {
                "oncall": {"participants": ["alice", "carol"], "length": "7d",
                           "handoff": "09:00", "timezone": "Europe/Berlin",
                           "start": "2026-01-05"},
                "senior_oncall": {"participants": ["dave", "bob"], "length": "1w",
                                  "handoff": "09:00", "timezone": "Europe/Berlin",
                                  "start": "2026-01-05"},
                "lead": "bob", "manager": "erin",
            },
            "web": {
                "oncall": {"participants": ["frank", "ivan"], "length": "7d",
                           "handoff": "10:00", "timezone": "America/New_York",
                           "start": "2026-01-05"},
                "lead": "ivan",
            },
            "nights": {
                "oncall": {"participants": ["xavier", "yara", "zoe"], "length": "12h",
                           "handoff": "08:00", "timezone": "UTC", "start": "2026-01-05"},
            },
        },
        "organisation": {"director": "grace", "vp_engineering": "heidi",
                         "executives": ["olivia"], "fallback": ["sre"]},
        "default_team": "payments",
    }
    data.update(overrides)
    return data


def load(**overrides: Any) -> OnCallSchedule:
    """Parse schedule_data with overrides."""
    return OnCallSchedule.parse(schedule_data(**overrides))


class TestRotation:
    """who_is_on_call follows turns, hand-off times and time zones."""

    def test_first_shift_starts_at_handoff_on_start_date(self) -> None:
        """Participant 0 takes over at the hand-off time of the start date, not at midnight."""
        schedule = load()
        handoff = datetime(2026, 1, 5, 9, 0, tzinfo=BERLIN)
        assert schedule.who_is_on_call("payments", handoff) == "alice"
        assert schedule.who_is_on_call("payments", handoff - timedelta(minutes=1)) == "carol"

    def test_handoff_after_rotation_length(self) -> None:
        """After one length the next participant takes over, exactly at the hand-off minute."""
        schedule = load()
        handoff = datetime(2026, 1, 12, 9, 0, tzinfo=BERLIN)
        assert schedule.who_is_on_call("payments", handoff - timedelta(seconds=1)) == "alice"
        assert schedule.who_is_on_call("payments", handoff) == "carol"
        assert schedule.who_is_on_call("payments", handoff + timedelta(days=7)) == "alice"

    def test_handoff_keeps_wall_time_across_dst(self) -> None:
        """After the spring DST change the hand-off is still 09:00 local (07:00 UTC, not 08:00)."""
        schedule = load()
        # 2026-03-30 is 12 weeks after the start: alice's turn from 09:00 CEST = 07:00 UTC.
        assert schedule.who_is_on_call(
            "payments", datetime(2026, 3, 30, 7, 30, tzinfo=UTC)) == "alice"
        assert schedule.who_is_on_call(
            "payments", datetime(2026, 3, 30, 6, 59, tzinfo=UTC)) == "carol"

    def test_handoff_in_team_timezone(self) -> None:
        """A New York team hands off at 10:00 New York time, whatever zone the query uses."""
        schedule = load()
        ny_handoff = datetime(2026, 1, 12, 10, 0, tzinfo=ZoneInfo("America/New_York"))
        assert schedule.who_is_on_call("web", ny_handoff.astimezone(UTC)) == "ivan"
        assert schedule.who_is_on_call(
            "web", (ny_handoff - timedelta(minutes=1)).astimezone(BERLIN)) == "frank"

    def test_sub_day_rotation_counts_elapsed_time(self) -> None:
        """A 12 h rotation cycles through three people twice a day from the first hand-off."""
        schedule = load()
        first = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        turns = [schedule.who_is_on_call("nights", first + timedelta(hours=12 * i))
                 for i in range(4)]
        assert turns == ["xavier", "yara", "zoe", "xavier"]

    def test_senior_rotation_is_separate(self) -> None:
        """The senior rotation is queried on its own and has its own participants."""
        schedule = load()
        at = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
        assert schedule.who_is_on_call("payments", at, EscalationRole.SENIOR_ONCALL) == "dave"

    def test_unknown_team_has_nobody(self) -> None:
        """A team the schedule does not know has no on-call person (no exception)."""
        assert load().who_is_on_call("nope", datetime(2026, 1, 6, tzinfo=UTC)) is None


class TestOverrides:
    """Overrides replace the rotation while in force, [start, end)."""

    def test_override_replaces_participant_only_inside_window(self) -> None:
        """carol covers alice's shift from start (inclusive) until end (exclusive)."""
        schedule = load(overrides=[{
            "person": "carol", "team": "payments",
            "start": "2026-01-06T12:00:00+01:00", "end": "2026-01-07T12:00:00+01:00",
        }])
        start = datetime(2026, 1, 6, 12, 0, tzinfo=BERLIN)
        end = datetime(2026, 1, 7, 12, 0, tzinfo=BERLIN)
        assert schedule.who_is_on_call("payments", start - timedelta(seconds=1)) == "alice"
        assert schedule.who_is_on_call("payments", start) == "carol"
        assert schedule.who_is_on_call("payments", end - timedelta(seconds=1)) == "carol"
        assert schedule.who_is_on_call("payments", end) == "alice"

    def test_override_applies_to_its_team_and_rotation_only(self) -> None:
        """An override of payments' primary rotation changes neither web nor the senior rotation."""
        schedule = load(overrides=[{
            "person": "erin", "team": "payments",
            "start": "2026-01-06T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00",
        }])
        at = datetime(2026, 1, 7, tzinfo=UTC)
        assert schedule.who_is_on_call("payments", at) == "erin"
        assert schedule.who_is_on_call("payments", at, EscalationRole.SENIOR_ONCALL) == "dave"
        assert schedule.who_is_on_call("web", at) == "frank"

    def test_last_matching_override_wins(self) -> None:
        """When overrides overlap, the one later in the file decides."""
        window = {"team": "payments", "start": "2026-01-06T00:00:00+00:00",
                  "end": "2026-01-08T00:00:00+00:00"}
        schedule = load(overrides=[{"person": "erin", **window}, {"person": "grace", **window}])
        assert schedule.who_is_on_call("payments", datetime(2026, 1, 7, tzinfo=UTC)) == "grace"


class TestResponders:
    """Who each tier pages, per DOMAIN.md."""

    AT = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)  # alice primary, dave senior

    def names(self, tier: int, teams: list[str], schedule: OnCallSchedule | None = None
              ) -> list[str]:
        """Names paged at tier for teams."""
        return [r.person for r in (schedule or load()).responders(tier, teams, self.AT)]

    def test_tiers_follow_domain_roles(self) -> None:
        """Tier 1 on-call; 2 senior + lead; 3 manager + director; 4 VP + executives."""
        assert self.names(1, ["payments"]) == ["alice"]
        assert self.names(2, ["payments"]) == ["dave", "bob"]
        assert self.names(3, ["payments"]) == ["erin", "grace"]
        assert self.names(4, ["payments"]) == ["heidi", "olivia"]

    def test_each_owning_team_is_paged_once_per_person(self) -> None:
        """Two owning teams: both on-calls; the shared director appears once."""
        assert self.names(1, ["payments", "web"]) == ["alice", "frank"]
        assert self.names(3, ["payments", "web"]) == ["erin", "grace"]

    def test_unknown_team_falls_back_to_default_team(self) -> None:
        """A service whose team is not in the schedule is owned by the default team."""
        assert self.names(1, ["unowned"]) == ["alice"]

    def test_tier_resolving_to_nobody_pages_fallback(self) -> None:
        """A tier with no holder pages organisation.fallback rather than nobody."""
        schedule = load(default_team="web")
        assert self.names(3, ["web"], schedule) == ["grace"]  # no manager: director only
        schedule = load(organisation={"fallback": ["sre"]}, default_team="web")
        assert self.names(4, ["web"], schedule) == ["sre"]

    def test_roles_can_be_remapped(self) -> None:
        """The escalation table can be changed per deployment."""
        schedule = load(escalation={1: ["oncall", "team_lead"]})
        assert self.names(1, ["payments"], schedule) == ["alice", "bob"]


class TestValidation:
    """A broken schedule fails at load time with a message naming the entry."""

    @pytest.mark.parametrize(("change", "message"), [
        ({"default_team": "nope"}, "default_team"),
        ({"organisation": {"fallback": ["ghost"]}}, "unknown person 'ghost'"),
        ({"overrides": [{"person": "alice", "team": "payments",
                         "start": "2026-01-02T00:00:00+00:00",
                         "end": "2026-01-01T00:00:00+00:00"}]}, "end must be after start"),
        ({"overrides": [{"person": "alice", "team": "payments",
                         "start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00"}]},
         "timezone"),
        ({"escalation": {5: ["oncall"]}}, "tiers must be 1..4"),
    ])
    def test_invalid_top_level(self, change: dict[str, Any], message: str) -> None:
        """Unknown references, inverted or naive overrides and bad tiers are rejected."""
        with pytest.raises(ScheduleError, match=message):
            load(**change)

    def test_unknown_rotation_participant_is_named(self) -> None:
        """A rotation naming someone not in people fails, naming the rotation."""
        data = schedule_data()
        data["teams"]["web"]["oncall"]["participants"] = ["frank", "mallory"]
        with pytest.raises(ScheduleError, match=r"teams\.web\.oncall.*mallory"):
            OnCallSchedule.parse(data)

    @pytest.mark.parametrize(("field", "value", "message"), [
        ("length", "7 fortnights", "rotation length"),
        ("length", "0d", "positive"),
        ("timezone", "Mars/Olympus", "unknown timezone"),
        ("participants", [], "at least 1"),
    ])
    def test_invalid_rotation(self, field: str, value: Any, message: str) -> None:
        """Bad lengths, unknown time zones and empty rotations are rejected."""
        data = schedule_data()
        data["teams"]["web"]["oncall"][field] = value
        with pytest.raises(ScheduleError, match=message):
            OnCallSchedule.parse(data)

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing or malformed file raises ScheduleError with the path."""
        with pytest.raises(ScheduleError, match="cannot read"):
            OnCallSchedule.load(tmp_path / "missing.yaml")
        bad = tmp_path / "bad.yaml"
        bad.write_text("people: [unclosed")
        with pytest.raises(ScheduleError, match=str(bad)):
            OnCallSchedule.load(bad)

    def test_demo_schedule_loads(self) -> None:
        """The shipped demo schedule is valid and pages someone at every tier."""
        schedule = OnCallSchedule.load(
            Path(__file__).parents[2] / "demo" / "config" / "oncall.yaml")
        at = datetime(2026, 11, 21, tzinfo=UTC)
        for tier in (1, 2, 3, 4):
            assert schedule.responders(tier, ["payments"], at)

    def test_length_forms(self) -> None:
        """Lengths are weeks, days, hours, minutes, or a bare number of hours."""
        assert parse_length("1w") == timedelta(days=7)
        assert parse_length("12h") == timedelta(hours=12)
        assert parse_length("90m") == timedelta(minutes=90)
        assert parse_length(24) == timedelta(days=1)
