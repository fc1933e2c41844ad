"""The seed journeys as agency events (synthetic people; journeys from the care-coordination report).

* The Evans household ("with care coordination"): Cerys, 19 months, West syndrome; brothers and
  sisters Cian (autism, special school) and Ffion (school refusal). Emergency admission, diagnosis,
  referrals to OT / SLT / dietetics / epilepsy nurses, a social-services referral declined for her
  age then re-referred, a care coordinator allocated, housing assessment, respite, a single plan.
* The Lewis household ("without care coordination"): Olivia, West syndrome at 5 months, a two-week
  admission, discharge with "a raft of appointments", Portage waiting list, SLT and physiotherapy
  referrals, missed and cancelled appointments, reports that never reach the paediatrician,
  and, years later, an EHC needs assessment that takes longer than 20 weeks.

Every event is stamped relative to ``now`` so upcoming appointments stay upcoming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub.core.events import InboundEvent, SubjectRef
from hub.demo.identifiers import nhs_number, upn


def service(agency_id: str, agency: str, sector: str, name: str, code: str | None = None) -> dict[str, Any]:
    return {"agency_id": agency_id, "agency_name": agency, "sector": sector, "service_code": code,
            "service_name": name}


ABUHB = ("7A6", "Aneurin Bevan University Health Board")
CAV = ("7A4", "Cardiff and Vale University Health Board")
NEWPORT = ("W06000022", "Newport City Council")
SLT = service(*ABUHB, "health", "Speech and language therapy, Serennu", "SLT")
OT = service(*ABUHB, "health", "Occupational therapy, Serennu", "OT")
PHYSIO = service(*ABUHB, "health", "Physiotherapy, Serennu", "PHYS")
DIET = service(*ABUHB, "health", "Dietetics, Serennu", "DIET")
PAEDS = service(*ABUHB, "health", "Community paediatrics, Serennu", "PAED")
EPILEPSY = service(*ABUHB, "health", "Paediatric epilepsy nurses", "EPIL")
PORTAGE = service(*ABUHB, "health", "Portage (child development advisors)", "PORT")
ISCAN = service(*ABUHB, "health", "ISCAN South (single point of access)", "ISCAN")
GWENT = service(*ABUHB, "health", "Royal Gwent Hospital, paediatric ward", "RGH")
CARDIFF = service(*CAV, "health", "Paediatric neurology, Noah's Ark Children's Hospital", "NEURO")
CWD = service(*NEWPORT, "social_care", "Children with Disabilities Team", "CWD")
HOUSING = service(*NEWPORT, "social_care", "Housing adaptations", "HOUS")
CARE_COORD = service(*NEWPORT, "social_care", "Complex needs care coordination", "CC")
SEND = service(*NEWPORT, "education", "SEN and inclusion team", "SEND")
MAES_EBBW = service("W06000022-S1", "Maes Ebbw Special School", "education", "Maes Ebbw Special School")
HIGH_SCHOOL = service("W06000022-S2", "Newport High School", "education", "Newport High School")
PRIMARY = service("W06000022-S3", "St Julian's Primary School", "education", "St Julian's Primary School")


@dataclass(frozen=True)
class Person:
    label: str  # what the demo prints; never sent to the hub
    child_id: str
    household_id: str
    identifiers: tuple[SubjectRef, ...]
    name: str = ""  # the child's name, as agencies know it (synthetic)
    born: date | None = None  # date of birth, as enrolment records it (synthetic)
    parents: tuple[str, ...] = ()  # the names of the parents (synthetic)

    def id(self, system: str) -> SubjectRef:
        return next(i for i in self.identifiers if i.system == system)


@dataclass
class Journey:
    now: datetime
    events: list[InboundEvent] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    _n: int = 0

    def add(self, who: Person, record_type: str, days: float, body: dict[str, Any], *, system: str = "nhs-number",
            source: str = "abuhb-wcp", sector: str = "health", category: str = "general", version: int = 1,
            source_id: str | None = None) -> str:
        self._n += 1
        sid = source_id or f"{who.child_id}-{self._n:03d}"
        self.events.append(InboundEvent(
            record_type=record_type, sector=sector, source_system=source, source_id=sid,  # type: ignore[arg-type]
            occurred_at=self.now + timedelta(days=days), subject=who.id(system), body=body,
            source_version=version, category=category, mapping="demo@1"))
        return sid

    def link(self, who: Person, days: float) -> None:
        for ident in who.identifiers:
            self._n += 1
            self.events.append(InboundEvent(
                record_type="IdentityLinked", sector="hub", source_system="hub-enrolment",
                source_id=f"link-{who.child_id}-{ident.system}", occurred_at=self.now + timedelta(days=days),
                subject=ident, body={"action": "link", "child_id": who.child_id, "household_id": who.household_id,
                                     "identifier_system": ident.system, "reason": "enrolled by care coordinator"}))

    def appointment(self, who: Person, svc: dict[str, Any], days: float, outcome: str | None,
                    contact: str = "follow_up", purpose: str | None = None) -> str:
        start = self.now + timedelta(days=days)
        booking = {"service": svc, "start": start, "contact_type": contact, "purpose": purpose,
                   "location": "Serennu Children's Centre"}
        appt = self.add(who, "AppointmentBooked", days - 21, booking)
        if outcome:
            self.add(who, "AttendanceRecorded", days, {"appointment_id": appt, "service": svc, "outcome": outcome,
                                                      "contact_type": contact})
        return appt


def build(now: datetime | None = None) -> Journey:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    j = Journey(now=now)
    today = now.date()
    evans, lewis = ("Sian Evans", "Rhodri Evans"), ("Bethan Lewis",)
    cerys = Person("Cerys (19 months, West syndrome)", "child-evans-1", "household-evans",
                   (SubjectRef("nhs-number", nhs_number(101)), SubjectRef("la-person-id", "NPT-CS-40711")),
                   "Cerys Evans", today - timedelta(days=580), evans)
    cian = Person("Cian (autism)", "child-evans-2", "household-evans",
                  (SubjectRef("nhs-number", nhs_number(102)), SubjectRef("upn", upn(102))),
                  "Cian Evans", today - timedelta(days=4419), evans)
    ffion = Person("Ffion (refusing school)", "child-evans-3", "household-evans",
                   (SubjectRef("nhs-number", nhs_number(103)), SubjectRef("upn", upn(103))),
                   "Ffion Evans", today - timedelta(days=5157), evans)
    olivia = Person("Olivia (West syndrome)", "child-lewis-1", "household-lewis",
                    (SubjectRef("nhs-number", nhs_number(201)), SubjectRef("upn", upn(201))),
                    "Olivia Lewis", today - timedelta(days=2250), lewis)
    j.people = [cerys, cian, ffion, olivia]

    # --- Evans household: with care coordination ---------------------------------------------
    j.add(cerys, "HospitalAdmitted", -180, {"service": GWENT, "emergency": True, "reason": "prolonged seizure"})
    j.add(cerys, "DiagnosisRecorded", -166, {"service": PAEDS, "code_system": "http://snomed.info/sct",
                                             "code": "28055006", "display": "West syndrome"}, category="clinical")
    j.add(cerys, "HospitalDischarged", -150, {"service": GWENT, "follow_up": "community paediatrics"})
    j.link(cerys, -149)  # enrolment after the first events: those were parked until now
    for svc in (OT, SLT, DIET, EPILEPSY):
        j.add(cerys, "ReferralMade", -148, {"service": svc, "reason": "West syndrome, feeding and development",
                                            "pathway": "ISCAN"})
    j.add(cerys, "ReferralMade", -147, {"service": CARDIFF, "reason": "specialist opinion: West syndrome"})
    ss = j.add(cerys, "ReferralMade", -140, {"service": CWD, "reason": "support at home"}, system="la-person-id",
               source="newport-lcs", sector="social_care", category="social_care")
    j.add(cerys, "SocialCareOutcome", -133, {"service": CWD, "outcome_kind": "referral_declined",
                                             "reason": "below the age criterion"}, system="la-person-id",
          source="newport-lcs", sector="social_care", category="social_care")
    j.add(cerys, "ReferralMade", -128, {"service": CARE_COORD, "reason": "re-referral via hospital",
                                        "pathway": "care coordination"}, system="la-person-id", source="newport-lcs",
          sector="social_care", category="social_care", source_id=ss + "-rr")
    j.add(cerys, "KeyProfessionalChanged", -126, {"service": CARE_COORD, "role": "care coordinator",
                                                  "current": {"id": "staff-cc-07", "role": "care coordinator",
                                                              "display_name": "Care coordinator (Newport)"},
                                                  "effective_date": (now - timedelta(days=126)).date()},
          system="la-person-id", source="newport-lcs", sector="social_care", category="social_care")
    j.add(cerys, "SocialCareOutcome", -110, {"service": HOUSING, "outcome_kind": "housing_assessment",
                                             "reason": "steps at home; wheelchair access needed"},
          system="la-person-id", source="newport-lcs", sector="social_care", category="social_care")
    j.add(cerys, "SocialCareOutcome", -95, {"service": CWD, "outcome_kind": "short_break",
                                            "reason": "respite, Tuesdays 8 hours"}, system="la-person-id",
          source="newport-lcs", sector="social_care", category="social_care")
    j.appointment(cerys, SLT, -90, "attended", "new")
    j.appointment(cerys, DIET, -85, "attended", "new")
    j.appointment(cerys, OT, -80, "could_not_attend", "new")
    j.add(cerys, "ReportIssued", -75, {"report_id": "rep-cerys-slt-1", "service": SLT, "report_kind":
                                       "speech_and_language_therapy", "title": "Feeding and communication assessment",
                                       "document_ref": "abuhb-docs:slt/4411"}, category="clinical")
    j.add(cerys, "ReportIssued", -70, {"report_id": "rep-cerys-diet-1", "service": DIET, "report_kind": "dietetics",
                                       "title": "Enteral feeding plan"}, category="clinical")
    j.add(cerys, "PlanPublished", -60, {"plan_id": "plan-evans-single", "plan_kind": "single_plan",
                                        "service": CARE_COORD, "title": "Single plan for Cerys and family",
                                        "review_due": (now + timedelta(days=120)).date()},
          system="la-person-id", source="newport-lcs", sector="social_care", category="social_care")
    j.appointment(cerys, PAEDS, 10, None, "follow_up", "review with consultant paediatrician")
    j.appointment(cerys, CARDIFF, 24, None, "follow_up", "neurology review")

    j.link(cian, -170)
    j.add(cian, "SchoolPlacement", -160, {"school": MAES_EBBW, "phase": "secondary", "setting_kind": "special",
                                          "start_date": date(now.year - 1, 9, 4)}, system="upn",
          source="newport-sims", sector="education", category="education")
    j.add(cian, "PlanReviewed", -40, {"plan_id": "plan-cian-idp", "plan_kind": "individual_development_plan",
                                      "service": MAES_EBBW, "outcome": "continue; add transport support"},
          system="upn", source="newport-sims", sector="education", category="education")

    j.link(ffion, -170)
    j.add(ffion, "SchoolAttendance", -30, {"school": HIGH_SCHOOL, "period_start": (now - timedelta(days=90)).date(),
                                           "period_end": (now - timedelta(days=30)).date(), "sessions_possible": 120,
                                           "sessions_attended": 74, "authorised_absence": 10,
                                           "unauthorised_absence": 36}, system="upn", source="newport-sims",
          sector="education", category="education")
    j.add(ffion, "ReferralMade", -25, {"service": service(*ABUHB, "health", "CAMHS", "CAMHS"),
                                       "reason": "school refusal, anxiety"}, category="mental_health")

    # --- Lewis household: without care coordination ------------------------------------------
    j.link(olivia, -400)
    j.add(olivia, "HospitalAdmitted", -395, {"service": GWENT, "emergency": True, "reason": "seizure in high chair"})
    j.add(olivia, "DiagnosisRecorded", -390, {"service": PAEDS, "code_system": "http://snomed.info/sct",
                                              "code": "28055006", "display": "West syndrome"}, category="clinical")
    j.add(olivia, "HospitalDischarged", -381, {"service": GWENT, "follow_up": None})
    j.add(olivia, "WaitingListEntered", -375, {"service": PORTAGE, "estimated_wait_days": 180})
    j.add(olivia, "ReferralMade", -370, {"service": SLT, "reason": "communication"})
    j.add(olivia, "ReferralMade", -370, {"service": PHYSIO, "reason": "motor delay"})
    j.add(olivia, "WaitingListEntered", -365, {"service": SLT, "estimated_wait_days": 270})
    for day, svc, outcome in ((-300, PHYSIO, "did_not_attend"), (-298, PAEDS, "attended"),
                              (-296, PHYSIO, "could_not_attend"), (-260, SLT, "attended"),
                              (-259, PHYSIO, "could_not_attend"), (-258, PAEDS, "did_not_attend")):
        j.appointment(olivia, svc, day, outcome)
    j.add(olivia, "ReportIssued", -250, {"report_id": "rep-olivia-slt-1", "service": SLT,
                                         "report_kind": "speech_and_language_therapy",
                                         "title": "Speech and language therapy assessment"}, category="clinical")
    j.add(olivia, "ReportIssued", -240, {"report_id": "rep-olivia-physio-1", "service": PHYSIO,
                                         "report_kind": "physiotherapy", "title": "Physiotherapy report"},
          category="clinical")
    req = j.add(olivia, "EhcAssessmentRequested", -200, {"service": SEND, "request_received_date":
                                                        (now - timedelta(days=200)).date(), "requested_by": "family"},
                system="upn", source="newport-ehc", sector="education", category="education")
    j.add(olivia, "EhcAssessmentDecided", -160, {"service": SEND, "request_id": req, "decision": "assess",
                                                 "decision_date": (now - timedelta(days=160)).date()},
          system="upn", source="newport-ehc", sector="education", category="education")
    j.add(olivia, "EhcPlanIssued", -45, {"service": SEND, "plan_id": "ehc-olivia", "request_id": req,
                                         "request_received_date": (now - timedelta(days=200)).date(),
                                         "plan_start_date": (now - timedelta(days=45)).date(),
                                         "plan_status": "issued", "weeks_from_request": 22},
          system="upn", source="newport-ehc", sector="education", category="education")
    j.add(olivia, "SchoolPlacement", -40, {"school": PRIMARY, "phase": "primary", "setting_kind": "mainstream",
                                           "start_date": (now - timedelta(days=40)).date()}, system="upn",
          source="newport-sims", sector="education", category="education")
    j.appointment(olivia, PAEDS, 7, None, "follow_up", "consultant paediatrician review")
    return j
