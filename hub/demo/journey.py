"""The "they haven't sent me the report" journey, as events the demo can send in two steps.

Rhys (synthetic) sees a speech and language therapist in a neighbouring health board (Cardiff and
Vale, 7A4) and a community paediatrician in his own (Aneurin Bevan, 7A6). The SLT report is issued,
but it crosses an organisational boundary and the family has not said it may be shared, so the hub
withholds it (rule R3) instead of it silently never arriving. A paediatric appointment is booked
in five days: the readiness view and a coordinator alert say the report is withheld and that the
step is "ask the family for consent to share with Community paediatrics". The family then gives
consent (a FHIR Consent permitting health services for direct care); the hub re-decides the
withheld share and delivers it, exactly once, before the appointment.

Usage by the demo::

    j = report_not_sent_journey(now)
    await services.ingest.accept(j.before_consent)     # report withheld, coordinator warned
    ... show GET /v1/households/{j.household_id}/readiness ...
    await services.ingest.accept(j.consent)            # consent given → report delivered
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.core.events import InboundEvent, SubjectRef
from hub.demo.identifiers import nhs_number

CAV_SLT = {"agency_id": "7A4", "agency_name": "Cardiff and Vale University Health Board", "sector": "health",
           "service_code": "SLT", "service_name": "Speech and language therapy, Cardiff and Vale"}
ABUHB_PAEDS = {"agency_id": "7A6", "agency_name": "Aneurin Bevan University Health Board", "sector": "health",
               "service_code": "PAED", "service_name": "Community paediatrics, Serennu"}


@dataclass
class ReportJourney:
    child_id: str
    household_id: str
    subject: SubjectRef
    slt_report_source_id: str
    appointment_start: datetime
    directive_id: str
    before_consent: list[InboundEvent] = field(default_factory=list)
    consent: list[InboundEvent] = field(default_factory=list)


def report_not_sent_journey(now: datetime | None = None, *, seed: int = 301, child_id: str = "child-morgan-1",
                            household_id: str = "household-morgan", appointment_in_days: float = 5) -> ReportJourney:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    nhs = SubjectRef("nhs-number", nhs_number(seed))
    hub_id = SubjectRef("hub-child-id", child_id)
    start = now + timedelta(days=appointment_in_days)

    def ev(record_type: str, sid: str, days: float, body: dict[str, object],
           category: str = "clinical") -> InboundEvent:
        return InboundEvent(record_type=record_type, sector="health", source_system="cav-wcp" if "cav" in sid
                            else "abuhb-wcp", source_id=sid, occurred_at=now + timedelta(days=days), subject=nhs,
                            body=body, category=category, mapping="demo@1")

    links = [InboundEvent(record_type="IdentityLinked", sector="hub", source_system="hub-enrolment",
                          source_id=f"link-{child_id}-{ident.system}", occurred_at=now - timedelta(days=60),
                          subject=ident, body={"action": "link", "child_id": child_id, "household_id": household_id,
                                               "identifier_system": ident.system, "reason": "enrolled"})
             for ident in (nhs, hub_id)]
    report_sid = f"cav-slt-report-{child_id}"
    before = [
        *links,
        ev("ReferralMade", f"abuhb-ref-paeds-{child_id}", -50, {"service": ABUHB_PAEDS, "reason": "development"}),
        ev("ReferralMade", f"cav-ref-slt-{child_id}", -45, {"service": CAV_SLT, "reason": "communication"}),
        ev("AssessmentCompleted", f"cav-assess-slt-{child_id}", -20,
           {"service": CAV_SLT, "assessment_kind": "Communication assessment"}),
        ev("ReportIssued", report_sid, -10, {"report_id": f"slt-{child_id}", "service": CAV_SLT,
                                             "report_kind": "speech_and_language_therapy",
                                             "title": "Speech and language therapy report",
                                             "document_ref": "cav-docs:slt/7781"}),
        ev("AppointmentBooked", f"abuhb-appt-paeds-{child_id}", -3,
           {"service": ABUHB_PAEDS, "start": start, "contact_type": "follow_up",
            "purpose": "consultant paediatrician review"}, category="general"),
    ]
    directive_id = f"consent-{child_id}-health"
    directive = Directive(id=directive_id, child_id=child_id, made_by=f"parent-{household_id}",
                          made_by_role=Grantor.PARENT, made_at=now, decision=DirectiveDecision.PERMIT,
                          scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    consent = [InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent",
                            source_id=directive_id, occurred_at=now, subject=hub_id,
                            body={"directive_id": directive_id, "granted_by": "family",
                                  "fhir_consent": json.dumps(directive_to_fhir_dict(directive))})]
    return ReportJourney(child_id, household_id, hub_id, report_sid, start, directive_id, before, consent)
