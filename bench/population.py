"""A synthetic population of families for the timeline benches: deterministic, realistic in shape, fast.

Sized from the care-coordination seed (/work/shared/domain/extract-000-care-coordination.md §6.3,
§6.5, §6.6, §8 "Benchmark sizing starting points"):

* households of 1-3 children (50 % / 30 % / 20 %), every child with their own agency identifiers:
  an NHS number always, a UPN for 75 % (school age), a local-authority person id for 50 %
  (known to social care). One ``IdentityLinked`` event per identifier, sent by the hub's enrolment;
  enrolment happens 0-60 days after the child's first event, so a family's first events are
  parked until their link arrives, as in ``hub.demo.scenario``.
* each child sees 4-20 professionals a year (seed: "up to 20 professionals a year") drawn from
  health (therapies, paediatrics, Portage, CAMHS, hospitals), local authority (Children with
  Disabilities team, housing, care coordination, Families First) and education (schools, SEN team).
* the event mix per child: appointments (``AppointmentBooked`` 14-28 days ahead, then
  ``AttendanceRecorded`` once past) ~60 % of events; referrals ~9 %; waiting-list entries ~7 %;
  reports ~12 % (8 report kinds per family, seed: "8 report streams"); plans published/reviewed
  ~5 %; education/social-care extras the rest. Appointments are spread over the family's year so
  that no family exceeds ~8 a week (the seed's worst case): a 100-event family has about one a week,
  a 500-event family about five.
* attendance outcomes: **assumed base missed rate 12 %** of appointments with an outcome (the seed
  gives 1,455 missed a year at Serennu but no denominator, §6.3), split as the seed's missed
  appointments are: 69 % CNA (``could_not_attend``), 31 % DNA (``did_not_attend``). 85 % of
  appointments are follow-ups (the seed's share of missed follow-ups).
* arrival order: each event arrives ``occurred_at + delay``; 90 % within minutes, 7 % within
  hours (nightly batch), 3 % late by 1-30 days (a report typed up late, a spreadsheet upload).
  :meth:`Population.events` yields events in arrival order (globally within each chunk of
  ``chunk_families`` families; chunks follow each other), so most arrive in event-time order and
  some arrive late. Appointments booked ahead arrive before they happen (their event time is the
  booking).

Determinism: family ``i`` of a population with seed ``s`` is generated from its own
``random.Random`` seeded by (s, i), so any family or range of families can be regenerated alone,
and the output is the same on every run.

Speed: ~100k+ events/s on one core (``python bench/population.py`` prints it); the benches
generate before they time anything.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

from hub.core.events import InboundEvent, SubjectRef
from hub.demo.identifiers import upn

MISSED_RATE = 0.12  # assumed: share of appointments with an outcome that were missed (DNA + CNA)
CNA_SHARE = 1002 / 1455  # seed §6.3: CNA 1,002 of 1,455 missed
FOLLOW_UP_SHARE = 0.85  # seed §6.3: follow-ups are 85 % of missed appointments
END = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # "now" of the population: events run up to here
SPAN_DAYS = 365


_NHS: list[str] = []


def nhs_number(k: int) -> str:
    """The k-th modulus-11-valid NHS number of the never-issued 999 range (909,091 of them), so that
    distinct k give distinct numbers (``hub.demo.identifiers.nhs_number`` skips invalid bodies to the
    next serial, so neighbouring serials can collide)."""
    if not _NHS:
        # weights 10..2 over 999 + six digits; split the six digits into two halves of three
        hi = [(f"{a:03d}", 7 * (a // 100) + 6 * (a // 10 % 10) + 5 * (a % 10)) for a in range(1000)]
        lo = [(f"{b:03d}", 4 * (b // 100) + 3 * (b // 10 % 10) + 2 * (b % 10)) for b in range(1000)]
        base = 9 * 10 + 9 * 9 + 9 * 8
        for ha, hw in hi:
            for lb, lw in lo:
                check = (11 - (base + hw + lw) % 11) % 11
                if check != 10:
                    _NHS.append(f"999{ha}{lb}{check}")
    return _NHS[k % len(_NHS)]


def _svc(agency_id: str, agency: str, sector: str, name: str, code: str | None = None) -> dict[str, Any]:
    return {"agency_id": agency_id, "agency_name": agency, "sector": sector, "service_code": code,
            "service_name": name}


_ABUHB = ("7A6", "Aneurin Bevan University Health Board")
_CAV = ("7A4", "Cardiff and Vale University Health Board")
_LAS = [("W06000022", "Newport City Council"), ("W06000020", "Torfaen County Borough Council"),
        ("W06000021", "Monmouthshire County Council"), ("W06000019", "Blaenau Gwent County Borough Council"),
        ("W06000018", "Caerphilly County Borough Council")]

# (service, report kind or None, weight): health services a disabled child is referred to
HEALTH = [
    (_svc(*_ABUHB, "health", "Speech and language therapy, Serennu", "SLT"), "speech_and_language_therapy", 5),
    (_svc(*_ABUHB, "health", "Occupational therapy, Serennu", "OT"), "occupational_therapy", 4),
    (_svc(*_ABUHB, "health", "Physiotherapy, Serennu", "PHYS"), "physiotherapy", 5),
    (_svc(*_ABUHB, "health", "Dietetics, Serennu", "DIET"), "dietetics", 3),
    (_svc(*_ABUHB, "health", "Community paediatrics, Serennu", "PAED"), "paediatric", 6),
    (_svc(*_ABUHB, "health", "Paediatric epilepsy nurses", "EPIL"), "paediatric", 2),
    (_svc(*_ABUHB, "health", "Portage (child development advisors)", "PORT"), "portage", 3),
    (_svc(*_ABUHB, "health", "ISCAN South (single point of access)", "ISCAN"), "review", 2),
    (_svc(*_ABUHB, "health", "Royal Gwent Hospital, paediatric ward", "RGH"), "discharge_summary", 2),
    (_svc(*_CAV, "health", "Paediatric neurology, Noah's Ark Children's Hospital", "NEURO"), "paediatric", 2),
    (_svc(*_ABUHB, "health", "CAMHS", "CAMHS"), "psychology", 2),
    (_svc(*_ABUHB, "health", "Audiology", "AUD"), "audiology", 2),
    (_svc(*_ABUHB, "health", "Paediatric ophthalmology", "OPH"), "ophthalmology", 1),
    (_svc(*_ABUHB, "health", "Orthotics", "ORTH"), "orthotics", 1),
    (_svc(*_ABUHB, "health", "Wheelchair services", "WHC"), "other", 1),
    (_svc(*_ABUHB, "health", "Clinical psychology", "PSY"), "psychology", 1),
]
LA_SERVICES = [("Children with Disabilities Team", "CWD"), ("Housing adaptations", "HOUS"),
               ("Complex needs care coordination", "CC"), ("Families First (CANS)", "FF"),
               ("Social services occupational therapy", "SSOT")]
SCHOOLS = ["Maes Ebbw Special School", "Crownbridge Special School", "Newport High School",
           "St Julian's Primary School", "Llanyrafon Primary School"]
ROLES = {"health": ("consultant", "therapist", "nurse", "advisor"),
         "social_care": ("social worker", "care coordinator", "key worker"),
         "education": ("SENCo", "class teacher", "educational psychologist")}
PLAN_KINDS = {"health": "family_service_plan", "social_care": ("single_plan", "care_and_support_plan",
                                                              "child_in_need_plan"),
              "education": ("individual_development_plan", "sen_support", "transition_plan")}
SOURCE = {"health": "abuhb-wcp", "social_care": "la-lcs", "education": "la-sims"}
SYSTEM = {"health": "nhs-number", "social_care": "la-person-id", "education": "upn"}
CATEGORY = {"health": "general", "social_care": "social_care", "education": "education"}
LOCATIONS = ["Serennu Children's Centre", "Royal Gwent Hospital, Children's Outpatients",
             "St Woolos Hospital", "Home visit", "School", "Nevill Hall Hospital"]
REASONS = ["developmental review", "feeding and swallowing", "communication", "motor delay",
           "seizure management", "sleep", "behaviour support", "equipment", "support at home"]
REPORT_TITLES = {"speech_and_language_therapy": "Communication assessment", "occupational_therapy":
                 "Sensory and motor assessment", "physiotherapy": "Physiotherapy review", "dietetics":
                 "Feeding plan", "paediatric": "Consultant review letter", "portage": "Developmental checklist",
                 "review": "Multi-disciplinary review", "discharge_summary": "Discharge summary", "psychology":
                 "Psychology assessment", "audiology": "Hearing test report", "ophthalmology": "Vision report",
                 "orthotics": "Orthotics fitting", "other": "Equipment assessment",
                 "social_care_assessment": "Family support assessment", "educational_psychology":
                 "Educational psychology report"}
_H_WEIGHTS = [w for _, _, w in HEALTH]


@dataclass(frozen=True)
class Child:
    child_id: str
    household_id: str
    identifiers: dict[str, SubjectRef]  # system -> subject


@dataclass(frozen=True)
class Family:
    index: int
    household_id: str
    children: tuple[Child, ...]


@dataclass
class Population:
    """``families`` households of ``events_per_family`` events each (identity links included)."""

    families: int
    events_per_family: int = 100
    seed: int = 20261123
    chunk_families: int = 500
    prefix: str = "hh"
    id_offset: int = 0  # identifiers of family i use serials id_offset + 4i + child (keep populations apart)

    # ---------------------------------------------------------------------------------- people
    def family(self, i: int) -> Family:
        rng = random.Random(self.seed * 1_000_003 + i)
        return self._family(i, rng)

    def _family(self, i: int, rng: random.Random) -> Family:
        hh = f"{self.prefix}-{self.seed % 100000}-{i:07d}"
        n = rng.choices((1, 2, 3), (50, 30, 20))[0]
        kids = []
        for c in range(n):
            serial = self.id_offset + i * 4 + c
            ids = {"nhs-number": SubjectRef("nhs-number", nhs_number(serial))}
            if rng.random() < 0.75:
                ids["upn"] = SubjectRef("upn", upn(serial))
            if rng.random() < 0.5:
                ids["la-person-id"] = SubjectRef("la-person-id", f"LA-{serial:011d}")
            kids.append(Child(f"{hh}-c{c + 1}", hh, ids))
        return Family(i, hh, tuple(kids))

    # ---------------------------------------------------------------------------------- events
    def family_events(self, i: int) -> list[tuple[datetime, InboundEvent]]:
        """(arrival time, event) for family ``i``, not sorted."""
        rng = random.Random(self.seed * 1_000_003 + i)
        fam = self._family(i, rng)
        out: list[tuple[datetime, InboundEvent]] = []
        links = sum(len(c.identifiers) for c in fam.children)
        budget = max(0, self.events_per_family - links)
        shares = [rng.uniform(0.6, 1.4) for _ in fam.children]
        total = sum(shares)
        per_child = [int(budget * s / total) for s in shares]
        per_child[0] += budget - sum(per_child)
        start = END - timedelta(days=SPAN_DAYS)
        for child, n in zip(fam.children, per_child, strict=True):
            _child_events(rng, fam, child, n, start, out)
        return out

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[InboundEvent]:
        """Families [start, stop) in arrival order (globally within each chunk of families)."""
        stop = self.families if stop is None else stop
        for lo in range(start, stop, self.chunk_families):
            hi = min(stop, lo + self.chunk_families)
            timed: list[tuple[datetime, int, InboundEvent]] = []
            n = 0
            for i in range(lo, hi):
                for arrival, ev in self.family_events(i):
                    timed.append((arrival, n, ev))
                    n += 1
            timed.sort()  # (arrival, n) is unique, so events are never compared
            for _, _, ev in timed:
                yield ev

    def links(self, start: int = 0, stop: int | None = None) -> Iterator[InboundEvent]:
        """Only the identity links of families [start, stop) (for benches that enrol first)."""
        stop = self.families if stop is None else stop
        for i in range(start, stop):
            for _, ev in self.family_events(i):
                if ev.record_type == "IdentityLinked":
                    yield ev

    @property
    def total(self) -> int:
        return self.families * self.events_per_family


def _delay(rand: Any) -> timedelta:
    r = rand()
    if r < 0.90:
        return timedelta(seconds=1 + 900 * r / 0.90)
    if r < 0.97:
        return timedelta(seconds=3600 + 82800 * rand())
    return timedelta(days=1 + 29 * rand())


def _professionals(rng: random.Random, child: Child) -> list[tuple[str, dict[str, Any], str | None, dict[str, Any]]]:
    """(sector, service, report kind, professional) for the 4-20 professionals of a child this year."""
    k = rng.randint(4, 20)
    has_la = "la-person-id" in child.identifiers
    has_school = "upn" in child.identifiers
    la_id, la_name = _LAS[rng.randrange(len(_LAS))]
    out = []
    for _j in range(k):
        r = rng.random()
        if has_la and r < 0.2:
            name, code = LA_SERVICES[rng.randrange(len(LA_SERVICES))]
            sector, svc, kind = "social_care", _svc(la_id, la_name, "social_care", name, code), "social_care_assessment"
        elif has_school and r > 0.82:
            if rng.random() < 0.5:
                school = SCHOOLS[rng.randrange(len(SCHOOLS))]
                svc = _svc(f"{la_id}-S{rng.randrange(1, 60)}", school, "education", school)
            else:
                svc = _svc(la_id, la_name, "education", "SEN and inclusion team", "SEND")
            sector, kind = "education", "educational_psychology"
        else:
            svc, kind, _ = rng.choices(HEALTH, _H_WEIGHTS)[0]
            sector = "health"
        prof = {"id": f"P{rng.randrange(1_000_000, 9_999_999)}", "role": rng.choice(ROLES[sector]),
                "display_name": None}
        out.append((sector, svc, kind, prof))
    return out


def _child_events(rng: random.Random, fam: Family, child: Child, n: int, start: datetime,
                  out: list[tuple[datetime, InboundEvent]]) -> None:
    profs = _professionals(rng, child)
    rand = rng.random

    def randrange(a: int, b: int | None = None) -> int:  # random.randrange is ~5x slower
        return int(rand() * a) if b is None else a + int(rand() * (b - a))
    span_s = SPAN_DAYS * 86400
    first = start + timedelta(seconds=randrange(0, 20 * 86400))
    seq = 0
    made = 0
    # 8 report kinds per family (seed): a child reports from at most 8 distinct services
    report_profs = [p for p in profs if p[2]][:8] or profs[:1]

    def emit(record_type: str, sector: str, when: datetime, body: dict[str, Any], *,
             category: str | None = None, arrival: datetime | None = None) -> str:
        nonlocal seq, made
        seq += 1
        made += 1
        system = SYSTEM[sector]
        subject = child.identifiers.get(system) or child.identifiers["nhs-number"]
        sid = f"{child.child_id}-{seq:05d}"
        ev = InboundEvent(record_type=record_type, sector=sector, source_system=SOURCE[sector],  # type: ignore[arg-type]
                          source_id=sid, occurred_at=when, subject=subject, body=body,
                          category=category or CATEGORY[sector], mapping="bench-population@1")
        out.append((arrival or when + _delay(rand), ev))
        return sid

    # enrolment: identity links 0-60 days after the child's first event
    enrol = first + timedelta(days=rng.uniform(0, 60))
    for system, ident in child.identifiers.items():
        out.append((enrol + timedelta(seconds=randrange(1, 300)), InboundEvent(
            record_type="IdentityLinked", sector="hub", source_system="hub-enrolment",
            source_id=f"link-{child.child_id}-{system}", occurred_at=enrol, subject=ident,
            body={"action": "link", "child_id": child.child_id, "household_id": child.household_id,
                  "identifier_system": system, "reason": "enrolled by care coordinator"})))

    while made < n:
        when = first + timedelta(seconds=randrange(0, span_s))
        sector, svc, _kind, prof = profs[randrange(len(profs))]
        r = rand()
        if r < 0.60 and n - made >= 2:
            # an appointment: booked 14-28 days ahead; its outcome once it has happened
            appt_at = when.replace(hour=8 + randrange(9), minute=15 * randrange(4), second=0)
            booked = appt_at - timedelta(days=randrange(14, 29))
            contact = "follow_up" if rand() < FOLLOW_UP_SHARE else "new"
            appt = emit("AppointmentBooked", sector, booked, {
                "service": svc, "professional": prof, "start": appt_at,
                "end": appt_at + timedelta(minutes=30 if contact == "follow_up" else 60),
                "location": LOCATIONS[randrange(len(LOCATIONS))], "contact_type": contact,
                "joint": rand() < 0.05, "purpose": None})
            if made < n and appt_at <= END:
                m = rand()
                outcome = ("attended" if m >= MISSED_RATE else
                           "could_not_attend" if m < MISSED_RATE * CNA_SHARE else "did_not_attend")
                emit("AttendanceRecorded", sector, appt_at + timedelta(minutes=45),
                     {"appointment_id": appt, "service": svc, "outcome": outcome, "contact_type": contact})
        elif r < 0.69:
            emit("ReferralMade", sector, when, {"service": svc, "referrer": prof, "reason": REASONS[randrange(9)],
                                                "priority": "routine" if rand() < 0.8 else "urgent",
                                                "pathway": "ISCAN" if sector == "health" else None})
        elif r < 0.76:
            emit("WaitingListEntered", sector, when, {"service": svc, "referral_id": None,
                                                      "estimated_wait_days": 7 * randrange(2, 53),
                                                      "position": randrange(1, 400)})
        elif r < 0.88:
            rs, rsvc, rkind, rprof = report_profs[randrange(len(report_profs))]
            rid = f"rep-{child.child_id}-{seq + 1}"
            late = when + timedelta(days=rng.uniform(1, 30)) if rand() < 0.3 else None  # typed up late
            emit("ReportIssued", rs, when, {"report_id": rid, "service": rsvc, "author": rprof,
                                            "report_kind": rkind or "other", "title": REPORT_TITLES[rkind or "other"],
                                            "document_ref": f"docs:{rid}", "disclosure_hold": False},
                 category="clinical" if rs == "health" else CATEGORY[rs], arrival=late)
        elif r < 0.93:
            kinds = PLAN_KINDS[sector]
            pk = kinds if isinstance(kinds, str) else kinds[randrange(len(kinds))]
            pid = f"plan-{child.child_id}-{pk}"
            if rand() < 0.4:
                emit("PlanPublished", sector, when, {"plan_id": pid, "plan_kind": pk, "service": svc,
                                                     "title": pk.replace("_", " ").capitalize(),
                                                     "review_due": (when + timedelta(days=180)).date()})
            else:
                emit("PlanReviewed", sector, when, {"plan_id": pid, "plan_kind": pk, "service": svc,
                                                    "outcome": "continue", "next_review_due":
                                                    (when + timedelta(days=180)).date()})
        elif sector == "education":
            d0 = when.date()
            possible = 2 * randrange(20, 60)
            attended = possible - randrange(0, possible // 3)
            emit("SchoolAttendance", sector, when, {
                "school": svc, "period_start": d0 - timedelta(days=possible // 2 * 7 // 5),
                "period_end": d0, "sessions_possible": possible, "sessions_attended": attended,
                "authorised_absence": (possible - attended) // 2,
                "unauthorised_absence": possible - attended - (possible - attended) // 2})
        else:
            emit("ReferralMade", sector, when, {"service": svc, "referrer": None, "reason": "re-referral",
                                                "priority": None, "pathway": None})


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the population's speed and shape.")
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--events-per-family", type=int, default=100)
    args = parser.parse_args()
    pop = Population(args.families, args.events_per_family, chunk_families=args.families)
    t = time.perf_counter()
    counts: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    n = late = 0
    prev = None
    for ev in pop.events():
        n += 1
        counts[ev.record_type] = counts.get(ev.record_type, 0) + 1
        if ev.record_type == "AttendanceRecorded":
            outcomes[ev.body["outcome"]] = outcomes.get(ev.body["outcome"], 0) + 1
        if prev is not None and ev.occurred_at < prev - timedelta(days=1):
            late += 1
        prev = max(prev, ev.occurred_at) if prev else ev.occurred_at
    s = time.perf_counter() - t
    print(f"{n:,} events from {args.families:,} families in {s:.2f} s = {n / s:,.0f} events/s")
    print(f"arrived more than a day behind the latest event time: {late:,} ({100 * late / n:.1f} %)")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<22} {v:>9,} {100 * v / n:5.1f} %")
    att = sum(outcomes.values()) or 1
    print("  attendance: " + ", ".join(f"{k} {100 * v / att:.1f} %" for k, v in sorted(outcomes.items())))


if __name__ == "__main__":
    main()
