"""Pure consent decision library: may this information go to this recipient, for this purpose, now?

Usage::

    engine = ConsentEngine(load_ruleset())            # packaged, versioned rule-set data
    family = engine.compile(child, directives, overrides)   # validate + pre-index once per child
    decision = engine.decide(info, recipient, Purpose.DIRECT_CARE, now, family)
    print(explain(decision))

Every :class:`Decision` carries outcome (PERMIT / DENY / HOLD), basis (consent, statutory_duty,
safeguarding, right_of_access, direct_care, none), the deciding rule id, the rule-set version, plain
English reasons (no personal identifiers), the directive ids that applied, ``notify_family`` and
``requires_ig_review``. No I/O other than reading ``consent/rulesets/ruleset.json``.

Rules, in the order the engine applies them (first that concludes wins):

R8  Information about a parent or sibling (``about != in_record_of``) is never shared as part of the
    child's record - DENY - except to the person it is about (right_of_access).
R7  Safeguarding override: purpose ``safeguarding``, inside [start, end), recipient agency and category
    within the override's scope (agencies; optionally categories, services, information ids) -> PERMIT,
    basis safeguarding, ``requires_ig_review``. The override
    needs a named person and a written justification (>= 20 chars), and is limited to 90 days.
    Overrides beat family refusals and disclosure holds.
R6  Statutory: purpose ``ehc_needs_assessment``, recipient service an LA SEN team, advice kinds and
    non-child-protection categories -> PERMIT, basis statutory_duty, ``notify_family``. A family
    refusal does not block it; the reasons say so and list the refusing directives.
R1  Family side: a parent with parental responsibility gets copies of reports / assessments / plans
    about the child (right_of_access), except child_protection and domestic_abuse. A young person
    (16+, or recorded competent) gets their own record and then controls it: parents need the young
    person's directive (scope sector ``family``) for restricted categories, and a young person's
    refusal binds them. Only the young person's directives count for family recipients.
R5  Consent directives (professionals and coordinators): the most specific applicable provision wins;
    at equal specificity deny wins. Inside one directive the deepest matching nested exception wins.
R2  Same agency as the producer and purpose direct_care -> PERMIT, basis direct_care (implied consent
    within the care team), unless a directive refuses it (objection honoured).
R4  Restricted categories (mental_health, child_protection, sexual_health, domestic_abuse) are only
    covered by a permit provision whose scope names the category: "permit all health" does not
    cover CAMHS. With no such permit -> DENY (R4-restricted-category).
R3  Otherwise DENY across agency boundaries (default deny).
R9  A directive applies only from ``made_at``, until ``withdrawn_at`` (exclusive), and inside its (and
    each nested provision's) validity ``period``; ``data_period`` limits which information it covers.
Disclosure hold (R1-disclosure-hold): while ``disclosure_hold and not released`` any share that would
    be permitted becomes HOLD (same basis), except same-agency shares and safeguarding overrides.
``decide_strictest`` decides at event time and delivery time and returns the stricter
    (DENY > HOLD > PERMIT). ``directives_needing_confirmation`` lists parent directives a young
    person who has turned 16 must confirm (they stay in force until withdrawn).

Specificity (rule 5) of a provision's scope is the tuple (recipient level, what-dimensions):
recipient level named professional (4) > service or role (3) > agency (2) > sector (1) > anyone (0);
what-dimensions = how many of categories, purposes, data period are constrained. Tuples compare
lexicographically. A nested exception must be narrower than its parent (every constrained
dimension a subset, periods inside), so it is never less specific. Narrowing a set inside the same
dimension (agencies {A, B} -> {A}) does not raise the rank across directives; at a tie deny wins.

FHIR R4 mapping (``consent.fhir``, validated with ``fhir.resources.R4B``): Directive <-> Consent with
status active/inactive (withdrawn; ``withdrawn_at`` in an extension), scope consentscope#patient-privacy,
category LOINC 59284-0, patient ``Patient/<child pseudonym>``, performer ``RelatedPerson/<id>`` (parent),
``Patient/<id>`` (young person) or ``Organization/<id>`` (corporate parent: a looked-after child's local
authority, whose directives count like a parent's), policyRule v3-ActCode OPTIN (permit) / OPTOUT (deny), identifier
= directive id. provision.type permit/deny, provision.period = validity, provision.dataPeriod,
nested provision.provision = exceptions. actor (role v3-ParticipationType IRCP): agencies
``Organization/<id>``, professionals ``Practitioner/<id>``, services / roles / sectors as identifier
references (systems ``urn:family-hub:service|role|sector``). purpose (v3-ActReason): direct_care TREAT,
care_coordination COC, ehc_needs_assessment HLEGAL, safeguarding THREAT, family_copy FAMRQT.
Categories as securityLabel: mental_health v3-ActCode PSY, sexual_health SEX, domestic_abuse SDV,
social_care SOC; general, clinical, education, child_protection in ``urn:family-hub:category``.
"""

from consent.directives import Directive, Period, Provision, Scope
from consent.engine import (
    ConsentEngine,
    decide,
    decide_strictest,
    directives_needing_confirmation,
    explain,
)
from consent.errors import (
    ConsentError,
    FhirMappingError,
    InvalidDirectiveError,
    InvalidOverrideError,
    InvalidRequestError,
    RuleSetError,
)
from consent.evaluation import DirectiveSet, Evaluation
from consent.model import (
    RESTRICTED_CATEGORIES,
    Basis,
    Category,
    Child,
    Decision,
    DirectiveDecision,
    Grantor,
    Information,
    Outcome,
    Override,
    OverrideScope,
    Purpose,
    Recipient,
    RecipientKind,
    Sector,
)
from consent.ruleset import RuleSet, load_ruleset

__all__ = [
    "RESTRICTED_CATEGORIES",
    "Basis",
    "Category",
    "Child",
    "ConsentEngine",
    "ConsentError",
    "Decision",
    "Directive",
    "DirectiveDecision",
    "DirectiveSet",
    "Evaluation",
    "FhirMappingError",
    "Grantor",
    "Information",
    "InvalidDirectiveError",
    "InvalidOverrideError",
    "InvalidRequestError",
    "Outcome",
    "Override",
    "OverrideScope",
    "Period",
    "Provision",
    "Purpose",
    "Recipient",
    "RecipientKind",
    "RuleSet",
    "RuleSetError",
    "Scope",
    "Sector",
    "decide",
    "decide_strictest",
    "directives_needing_confirmation",
    "explain",
    "load_ruleset",
]
