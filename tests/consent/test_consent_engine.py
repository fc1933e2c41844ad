"""Seed-journey examples for the consent engine (consent/engine.py)."""

from __future__ import annotations

from datetime import date

import pytest
from consent_factories import (
    ABUHB,
    CAV,
    CHILD_ID,
    LA,
    PARENT_ID,
    SCHOOL,
    SIBLING_ID,
    at,
    child,
    directive,
    info,
    parent,
    professional,
    young_person,
)

from consent import (
    Basis,
    Category,
    ConsentEngine,
    Directive,
    DirectiveDecision,
    Grantor,
    InvalidDirectiveError,
    InvalidOverrideError,
    InvalidRequestError,
    Outcome,
    Override,
    OverrideScope,
    Period,
    Provision,
    Purpose,
    Recipient,
    RecipientKind,
    Scope,
    Sector,
    decide,
    decide_strictest,
    directives_needing_confirmation,
    explain,
    load_ruleset,
)

P, D = DirectiveDecision.PERMIT, DirectiveDecision.DENY
ENGINE = ConsentEngine(load_ruleset())
VERSION = load_ruleset().version
SHARE_CAV_PAEDS = Scope(agency_ids=frozenset({CAV}), services=frozenset({"paediatrics"}))
JUSTIFICATION = "Disclosure at school of injuries; strategy discussion convened under s.47."


def fam(*directives, overrides=(), kid=None):
    return ENGINE.compile(kid or child(), directives, overrides)


def ov(oid="ov-1", start=0.0, end=7.0, agencies=(LA,), categories=None, justification=JUSTIFICATION):
    return Override(
        id=oid,
        child_id=CHILD_ID,
        named_person="pr-dsl-07",
        justification=justification,
        start=at(start),
        end=at(end),
        scope=OverrideScope(frozenset(agencies), None if categories is None else frozenset(categories)),
    )


class TestSltReportAcrossTrusts:
    def test_withheld_until_parent_grants_then_permitted_with_consent(self):
        slt = info()
        paed = professional()
        before = ENGINE.decide(slt, paed, Purpose.DIRECT_CARE, at(2), fam())
        assert before.outcome is Outcome.DENY
        assert before.rule_id == "R3-default-deny"
        assert before.basis is Basis.NONE
        assert before.ruleset_version == VERSION

        grant = directive("dir-cav-paeds", P, Scope(sectors=frozenset({Sector.HEALTH}), **_cav_paeds()))
        after = ENGINE.decide(slt, paed, Purpose.DIRECT_CARE, at(2), fam(grant))
        assert after.outcome is Outcome.PERMIT
        assert after.basis is Basis.CONSENT
        assert after.directive_ids == ("dir-cav-paeds",)
        assert after.rule_id == "R5-directive-permit"

    def test_family_always_gets_a_copy(self):
        d = ENGINE.decide(info(), parent(), Purpose.FAMILY_COPY, at(2), fam())
        assert (d.outcome, d.basis, d.rule_id) == (Outcome.PERMIT, Basis.RIGHT_OF_ACCESS, "R1-family-copy")

    def test_family_copy_even_when_parent_denied_everyone(self):
        deny_all = directive("dir-deny-all", D, Scope())
        d = ENGINE.decide(info(), parent(), Purpose.FAMILY_COPY, at(2), fam(deny_all))
        assert d.outcome is Outcome.PERMIT

    def test_parent_without_parental_responsibility_denied(self):
        d = ENGINE.decide(info(), parent(pr=False), Purpose.FAMILY_COPY, at(2), fam())
        assert d.outcome is Outcome.DENY
        assert d.rule_id == "R1-no-parental-responsibility"

    def test_same_agency_direct_care_permitted(self):
        colleague = professional(agency=ABUHB, service="slt", role="slt")
        d = ENGINE.decide(info(), colleague, Purpose.DIRECT_CARE, at(2), fam())
        assert (d.outcome, d.basis, d.rule_id) == (
            Outcome.PERMIT,
            Basis.DIRECT_CARE,
            "R2-same-agency-direct-care",
        )

    def test_same_agency_other_purpose_not_implied(self):
        colleague = professional(agency=ABUHB)
        d = ENGINE.decide(info(), colleague, Purpose.CARE_COORDINATION, at(2), fam())
        assert d.outcome is Outcome.DENY

    def test_directive_outside_validity_period_does_not_apply(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV}), period=Period(at(0), at(10))))
        assert ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(5), fam(grant)).permitted
        assert not ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(10), fam(grant)).permitted

    def test_data_period_limits_covered_information(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV}), data_period=Period(at(-30), at(0))))
        old, new = info(issued_days=-1), info(issued_days=1)
        assert ENGINE.decide(old, professional(), Purpose.DIRECT_CARE, at(5), fam(grant)).permitted
        assert not ENGINE.decide(new, professional(), Purpose.DIRECT_CARE, at(5), fam(grant)).permitted

    def test_directive_not_yet_made_does_not_apply(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})), made_days=3)
        assert not ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(grant)).permitted


def _cav_paeds() -> dict:
    return {"agency_ids": frozenset({CAV}), "services": frozenset({"paediatrics"})}


class TestRestrictedCategories:
    def test_camhs_note_to_school_denied_under_permit_all_health(self):
        all_health = directive("dir-all", P, Scope())
        camhs = info(category=Category.MENTAL_HEALTH, agency="camhs-abuhb")
        teacher = professional(agency=SCHOOL, sector=Sector.EDUCATION, service="senco", role="senco")
        d = ENGINE.decide(camhs, teacher, Purpose.CARE_COORDINATION, at(2), fam(all_health))
        assert d.outcome is Outcome.DENY
        assert d.rule_id == "R4-restricted-category"
        assert "restricted" in " ".join(d.reasons)

    def test_permit_all_health_does_not_cover_camhs_for_health_recipient(self):
        all_health = directive("dir-health", P, Scope(sectors=frozenset({Sector.HEALTH})))
        camhs = info(category=Category.MENTAL_HEALTH, agency="camhs-abuhb")
        assert ENGINE.decide(camhs, professional(), Purpose.DIRECT_CARE, at(2), fam(all_health)).outcome is (
            Outcome.DENY
        )

    def test_directive_naming_category_permits(self):
        named = directive(
            "dir-mh",
            P,
            Scope(sectors=frozenset({Sector.HEALTH}), categories=frozenset({Category.MENTAL_HEALTH})),
        )
        camhs = info(category=Category.MENTAL_HEALTH, agency="camhs-abuhb")
        d = ENGINE.decide(camhs, professional(), Purpose.DIRECT_CARE, at(2), fam(named))
        assert (d.outcome, d.basis, d.directive_ids) == (Outcome.PERMIT, Basis.CONSENT, ("dir-mh",))

    def test_broad_permit_with_named_professional_deny_still_blocks_restricted(self):
        broad = directive(
            "dir-a",
            P,
            Scope(sectors=frozenset({Sector.HEALTH})),
            exceptions=(
                Provision(
                    D, Scope(sectors=frozenset({Sector.HEALTH}), professional_ids=frozenset({"pr-0042"}))
                ),
            ),
        )
        named = directive(
            "dir-b",
            P,
            Scope(sectors=frozenset({Sector.HEALTH}), categories=frozenset({Category.MENTAL_HEALTH})),
        )
        camhs = info(category=Category.MENTAL_HEALTH, agency="camhs-abuhb")
        d = ENGINE.decide(camhs, professional(), Purpose.DIRECT_CARE, at(2), fam(broad, named))
        assert d.outcome is Outcome.DENY
        assert d.directive_ids == ("dir-a",)


class TestSpecificity:
    def test_never_to_named_professional_exception(self):
        share = directive(
            "dir-cav",
            P,
            Scope(agency_ids=frozenset({CAV})),
            exceptions=(
                Provision(D, Scope(agency_ids=frozenset({CAV}), professional_ids=frozenset({"pr-0042"}))),
            ),
        )
        named = professional(professional_id="pr-0042")
        other = professional(professional_id="pr-0099")
        d_named = ENGINE.decide(info(), named, Purpose.DIRECT_CARE, at(2), fam(share))
        d_other = ENGINE.decide(info(), other, Purpose.DIRECT_CARE, at(2), fam(share))
        assert (d_named.outcome, d_named.rule_id) == (Outcome.DENY, "R5-directive-deny")
        assert d_other.outcome is Outcome.PERMIT

    def test_separate_narrower_deny_beats_broader_permit(self):
        permit = directive("dir-p", P, Scope(sectors=frozenset({Sector.HEALTH})))
        deny = directive("dir-d", D, Scope(professional_ids=frozenset({"pr-0042"})))
        assert ENGINE.decide(
            info(), professional(), Purpose.DIRECT_CARE, at(2), fam(permit, deny)
        ).outcome is (Outcome.DENY)

    def test_narrower_permit_beats_broader_deny(self):
        deny = directive("dir-d", D, Scope(sectors=frozenset({Sector.HEALTH})))
        permit = directive("dir-p", P, SHARE_CAV_PAEDS)
        d = ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(deny, permit))
        assert d.outcome is Outcome.PERMIT
        assert d.directive_ids == ("dir-p",)

    def test_equal_specificity_deny_wins(self):
        a = directive("dir-a", P, Scope(agency_ids=frozenset({CAV})))
        b = directive("dir-b", D, Scope(agency_ids=frozenset({CAV, ABUHB})))
        assert (
            ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(a, b)).outcome
            is Outcome.DENY
        )

    def test_nested_exception_inside_exception(self):
        # deny all health; except CAV (permit); except CAV consultant pr-0042 (deny)
        tree = directive(
            "dir-tree",
            D,
            Scope(sectors=frozenset({Sector.HEALTH})),
            exceptions=(
                Provision(
                    P,
                    Scope(sectors=frozenset({Sector.HEALTH}), agency_ids=frozenset({CAV})),
                    (
                        Provision(
                            D,
                            Scope(
                                sectors=frozenset({Sector.HEALTH}),
                                agency_ids=frozenset({CAV}),
                                professional_ids=frozenset({"pr-0042"}),
                            ),
                        ),
                    ),
                ),
            ),
        )
        family = fam(tree)
        assert ENGINE.decide(
            info(), professional(professional_id="pr-1"), Purpose.DIRECT_CARE, at(2), family
        ).permitted
        assert not ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), family).permitted
        gp = professional(agency="gp-1", service="gp", role="gp", professional_id="pr-5")
        assert not ENGINE.decide(info(), gp, Purpose.DIRECT_CARE, at(2), family).permitted

    def test_parent_objection_blocks_same_agency_direct_care(self):
        deny = directive("dir-d", D, Scope(professional_ids=frozenset({"pr-0042"})))
        colleague = professional(agency=ABUHB)
        d = ENGINE.decide(info(), colleague, Purpose.DIRECT_CARE, at(2), fam(deny))
        assert d.outcome is Outcome.DENY


class TestWithdrawal:
    def test_withdrawn_directive_stops_applying_from_withdrawn_at(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})), withdrawn_days=5)
        family = fam(grant)
        assert ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(4.99), family).permitted
        assert not ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(5), family).permitted

    def test_withdraw_helper(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})))
        assert grant.withdraw(at(3)).withdrawn_at == at(3)

    def test_decide_strictest_uses_event_time_and_delivery_time(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})), withdrawn_days=5)
        family = fam(grant)
        d = ENGINE.decide_strictest(
            info(), professional(), Purpose.DIRECT_CARE, family, at_event_time=at(2), at_delivery_time=at(6)
        )
        assert d.outcome is Outcome.DENY
        # granted only after the event: still denied (consent at event time did not exist)
        late = fam(directive("dir-2", P, Scope(agency_ids=frozenset({CAV})), made_days=4))
        d2 = decide_strictest(
            info(), professional(), Purpose.DIRECT_CARE, late, at_event_time=at(2), at_delivery_time=at(6)
        )
        assert d2.outcome is Outcome.DENY
        both = decide_strictest(
            info(), professional(), Purpose.DIRECT_CARE, late, at_event_time=at(5), at_delivery_time=at(6)
        )
        assert both.outcome is Outcome.PERMIT

    def test_strictest_prefers_hold_over_permit(self):
        held = info(hold=True)
        d = decide_strictest(
            held, parent(), Purpose.FAMILY_COPY, fam(), at_event_time=at(1), at_delivery_time=at(2)
        )
        assert d.outcome is Outcome.HOLD


class TestStatutory:
    SEN = Recipient(
        RecipientKind.AGENCY_PROFESSIONAL,
        agency_id=LA,
        sector=Sector.EDUCATION,
        service="sen_team",
        role="officer",
    )

    def test_ehc_advice_shared_with_notice(self):
        d = ENGINE.decide(info(), self.SEN, Purpose.EHC_NEEDS_ASSESSMENT, at(2), fam())
        assert (d.outcome, d.basis, d.notify_family) == (Outcome.PERMIT, Basis.STATUTORY_DUTY, True)
        assert d.rule_id == "R6-statutory-ehc-advice"

    def test_family_deny_does_not_block_statutory_duty_but_is_reported(self):
        deny = directive("dir-no-la", D, Scope(agency_ids=frozenset({LA})))
        d = ENGINE.decide(info(), self.SEN, Purpose.EHC_NEEDS_ASSESSMENT, at(2), fam(deny))
        assert d.outcome is Outcome.PERMIT
        assert d.notify_family
        assert d.directive_ids == ("dir-no-la",)
        assert any("does not override a statutory duty" in r for r in d.reasons)

    def test_child_protection_not_covered_by_ehc_statutory_rule(self):
        cp = info(category=Category.CHILD_PROTECTION, agency="la-csc", sector=Sector.SOCIAL_CARE)
        d = ENGINE.decide(cp, self.SEN, Purpose.EHC_NEEDS_ASSESSMENT, at(2), fam())
        assert d.outcome is Outcome.DENY

    def test_other_la_service_not_statutory(self):
        housing = Recipient(
            RecipientKind.AGENCY_PROFESSIONAL, agency_id=LA, sector=Sector.SOCIAL_CARE, service="x"
        )
        assert (
            ENGINE.decide(info(), housing, Purpose.EHC_NEEDS_ASSESSMENT, at(2), fam()).outcome is Outcome.DENY
        )


class TestCorporateParent:
    def test_a_corporate_parents_directive_permits_like_a_parents(self):
        grant = Directive("dir-la", CHILD_ID, LA, Grantor.CORPORATE_PARENT, at(1), P, SHARE_CAV_PAEDS)
        d = ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(grant))
        assert (d.outcome, d.basis, d.directive_ids) == (Outcome.PERMIT, Basis.CONSENT, ("dir-la",))
        refuse = Directive("dir-la-no", CHILD_ID, LA, Grantor.CORPORATE_PARENT, at(1), D, SHARE_CAV_PAEDS)
        assert ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(refuse)).outcome is Outcome.DENY


class TestSafeguardingOverride:
    SW = Recipient(RecipientKind.AGENCY_PROFESSIONAL, agency_id=LA, sector=Sector.SOCIAL_CARE, service="csc")

    def test_override_permits_within_window_and_flags_ig_review(self):
        deny = directive("dir-no-la", D, Scope(agency_ids=frozenset({LA})))
        d = ENGINE.decide(info(), self.SW, Purpose.SAFEGUARDING, at(2), fam(deny, overrides=[ov()]))
        assert (d.outcome, d.basis, d.requires_ig_review) == (Outcome.PERMIT, Basis.SAFEGUARDING, True)
        assert d.override_id == "ov-1"

    def test_expired_override_does_not_apply(self):
        d = ENGINE.decide(info(), self.SW, Purpose.SAFEGUARDING, at(8), fam(overrides=[ov()]))
        assert d.outcome is Outcome.DENY
        assert not d.requires_ig_review

    def test_override_outside_scope_does_not_apply(self):
        family = fam(overrides=[ov(categories=[Category.CLINICAL])])
        mh = info(category=Category.MENTAL_HEALTH)
        assert ENGINE.decide(mh, self.SW, Purpose.SAFEGUARDING, at(2), family).outcome is Outcome.DENY
        school = professional(agency=SCHOOL, sector=Sector.EDUCATION)
        assert ENGINE.decide(info(), school, Purpose.SAFEGUARDING, at(2), family).outcome is Outcome.DENY

    def test_override_only_for_safeguarding_purpose(self):
        d = ENGINE.decide(info(), self.SW, Purpose.CARE_COORDINATION, at(2), fam(overrides=[ov()]))
        assert d.outcome is Outcome.DENY

    def test_override_without_justification_rejected(self):
        with pytest.raises(InvalidOverrideError, match="justification"):
            ov(justification="   ")
        with pytest.raises(InvalidOverrideError, match="justification"):
            ov(justification="because")

    def test_override_without_named_person_rejected(self):
        with pytest.raises(InvalidOverrideError, match="named"):
            Override("ov-2", CHILD_ID, " ", JUSTIFICATION, at(0), at(1), OverrideScope(frozenset({LA})))

    def test_override_must_be_time_limited(self):
        with pytest.raises(InvalidOverrideError, match="before"):
            ov(start=3, end=3)
        with pytest.raises(InvalidOverrideError, match="limit"):
            fam(overrides=[ov(end=365)])

    def test_override_limited_to_named_services_and_records(self):
        scope = OverrideScope(frozenset({LA}), recipient_services=frozenset({"CSC"}),
                              information_ids=frozenset({"ev-slt-001"}))
        family = fam(overrides=[Override("ov-s", CHILD_ID, "pr-dsl-07", JUSTIFICATION, at(0), at(7), scope)])
        assert ENGINE.decide(info(), self.SW, Purpose.SAFEGUARDING, at(2), family).outcome is Outcome.PERMIT
        other_service = Recipient(RecipientKind.AGENCY_PROFESSIONAL, agency_id=LA, sector=Sector.SOCIAL_CARE,
                                  service="housing")
        assert ENGINE.decide(info(), other_service, Purpose.SAFEGUARDING, at(2), family).outcome is Outcome.DENY
        other_record = info(info_id="ev-other")
        assert ENGINE.decide(other_record, self.SW, Purpose.SAFEGUARDING, at(2), family).outcome is Outcome.DENY
        with pytest.raises(InvalidOverrideError, match="non-empty"):
            OverrideScope(frozenset({LA}), information_ids=frozenset())

    def test_override_overrides_disclosure_hold(self):
        d = ENGINE.decide(info(hold=True), self.SW, Purpose.SAFEGUARDING, at(2), fam(overrides=[ov()]))
        assert d.outcome is Outcome.PERMIT


class TestThirdPartyInformation:
    def test_sibling_info_not_shared_in_childs_record(self):
        sib = info(about=SIBLING_ID)
        grant = directive("dir-all", P, Scope())
        for rcpt, purpose in (
            (professional(), Purpose.DIRECT_CARE),
            (parent(), Purpose.FAMILY_COPY),
            (professional(agency=ABUHB), Purpose.DIRECT_CARE),
        ):
            d = ENGINE.decide(sib, rcpt, purpose, at(2), fam(grant))
            assert (d.outcome, d.rule_id) == (Outcome.DENY, "R8-third-party")
            assert "another family member" in d.reasons[0]

    def test_parent_info_shared_only_with_that_parent(self):
        about_parent = info(about=PARENT_ID, category=Category.MENTAL_HEALTH)
        d = ENGINE.decide(about_parent, parent(), Purpose.FAMILY_COPY, at(2), fam())
        assert (d.outcome, d.basis) == (Outcome.PERMIT, Basis.RIGHT_OF_ACCESS)
        other_parent = ENGINE.decide(about_parent, parent("pa-other"), Purpose.FAMILY_COPY, at(2), fam())
        assert other_parent.outcome is Outcome.DENY


class TestYoungPerson:
    SIXTEEN_AT_T0 = date(2009, 1, 6)

    def test_turning_16_flags_parent_directives(self):
        parent_dir = directive("dir-p", P, Scope(agency_ids=frozenset({CAV})))
        withdrawn = directive("dir-w", P, Scope(agency_ids=frozenset({CAV})), withdrawn_days=2)
        assert directives_needing_confirmation([parent_dir], BIRTH_15, date(2025, 1, 5)) == ()
        flagged = directives_needing_confirmation(
            [parent_dir, withdrawn], self.SIXTEEN_AT_T0, date(2025, 1, 10)
        )
        assert [d.id for d in flagged] == ["dir-p"]

    def test_young_person_controls_restricted_categories(self):
        kid = child(self.SIXTEEN_AT_T0)
        mh = info(category=Category.MENTAL_HEALTH)
        d = ENGINE.decide(mh, parent(), Purpose.FAMILY_COPY, at(2), fam(kid=kid))
        assert (d.outcome, d.rule_id) == (Outcome.DENY, "R1-young-person-controls")
        # a general report still goes to parents
        assert ENGINE.decide(info(), parent(), Purpose.FAMILY_COPY, at(2), fam(kid=kid)).permitted
        consent = directive(
            "dir-yp",
            P,
            Scope(sectors=frozenset({Sector.FAMILY}), categories=frozenset({Category.MENTAL_HEALTH})),
            by=Grantor.YOUNG_PERSON,
        )
        d2 = ENGINE.decide(mh, parent(), Purpose.FAMILY_COPY, at(2), fam(consent, kid=kid))
        assert (d2.outcome, d2.basis, d2.directive_ids) == (Outcome.PERMIT, Basis.CONSENT, ("dir-yp",))

    def test_parent_gets_restricted_category_before_16(self):
        mh = info(category=Category.MENTAL_HEALTH)
        assert ENGINE.decide(mh, parent(), Purpose.FAMILY_COPY, at(2), fam()).permitted

    def test_gillick_competent_child_controls_earlier(self):
        kid = child(competent_from=date(2024, 6, 1))
        sh = info(category=Category.SEXUAL_HEALTH)
        assert ENGINE.decide(sh, parent(), Purpose.FAMILY_COPY, at(2), fam(kid=kid)).outcome is Outcome.DENY
        assert ENGINE.decide(sh, young_person(), Purpose.FAMILY_COPY, at(2), fam(kid=kid)).permitted

    def test_young_person_directive_before_eligible_rejected(self):
        yp = directive("dir-yp", P, Scope(), by=Grantor.YOUNG_PERSON)
        with pytest.raises(InvalidDirectiveError, match="young person"):
            fam(yp)

    def test_young_person_only_sees_own_record(self):
        kid = child(self.SIXTEEN_AT_T0)
        assert ENGINE.decide(info(), young_person(), Purpose.FAMILY_COPY, at(2), fam(kid=kid)).permitted
        assert not ENGINE.decide(
            info(), young_person(SIBLING_ID), Purpose.FAMILY_COPY, at(2), fam(kid=kid)
        ).permitted
        assert not ENGINE.decide(info(), young_person(), Purpose.FAMILY_COPY, at(2), fam()).permitted

    def test_family_excluded_categories(self):
        cp = info(category=Category.CHILD_PROTECTION, agency=LA, sector=Sector.SOCIAL_CARE)
        d = ENGINE.decide(cp, parent(), Purpose.FAMILY_COPY, at(2), fam())
        assert (d.outcome, d.rule_id) == (Outcome.DENY, "R1-family-excluded-category")


BIRTH_15 = date(2009, 6, 1)


class TestDisclosureHold:
    def test_hold_then_release(self):
        diagnosis = info(kind="diagnosis", hold=True)
        d = ENGINE.decide(diagnosis, parent(), Purpose.FAMILY_COPY, at(2), fam())
        assert (d.outcome, d.rule_id, d.basis) == (Outcome.HOLD, "R1-disclosure-hold", Basis.RIGHT_OF_ACCESS)
        released = info(kind="diagnosis", hold=True, released=True)
        assert ENGINE.decide(released, parent(), Purpose.FAMILY_COPY, at(2), fam()).outcome is Outcome.PERMIT

    def test_hold_applies_to_consented_cross_agency_share_not_same_agency(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})))
        held = info(hold=True)
        assert (
            ENGINE.decide(held, professional(), Purpose.DIRECT_CARE, at(2), fam(grant)).outcome
            is Outcome.HOLD
        )
        colleague = professional(agency=ABUHB)
        assert (
            ENGINE.decide(held, colleague, Purpose.DIRECT_CARE, at(2), fam(grant)).outcome is Outcome.PERMIT
        )

    def test_hold_does_not_turn_deny_into_hold(self):
        d = ENGINE.decide(info(hold=True), professional(), Purpose.DIRECT_CARE, at(2), fam())
        assert d.outcome is Outcome.DENY


class TestExplainAndErrors:
    def test_explain_is_readable(self):
        grant = directive("dir-1", P, Scope(agency_ids=frozenset({CAV})))
        text = explain(ENGINE.decide(info(), professional(), Purpose.DIRECT_CARE, at(2), fam(grant)))
        assert text.startswith("PERMITTED on the basis of consent")
        assert "dir-1" in text
        assert VERSION in text
        sw = TestSafeguardingOverride.SW
        text2 = explain(ENGINE.decide(info(), sw, Purpose.SAFEGUARDING, at(2), fam(overrides=[ov()])))
        assert "information governance" in text2

    def test_module_level_decide_uses_packaged_ruleset(self):
        assert decide(info(), parent(), Purpose.FAMILY_COPY, at(2), fam()).ruleset_version == VERSION

    def test_naive_time_rejected(self):
        with pytest.raises(InvalidRequestError, match="timezone"):
            ENGINE.decide(info(), parent(), Purpose.FAMILY_COPY, at(2).replace(tzinfo=None), fam())

    def test_information_from_another_childs_record_rejected(self):
        other = ENGINE.compile(child().__class__("ch-other", BIRTH_15))
        with pytest.raises(InvalidRequestError):
            ENGINE.decide(info(), parent(), Purpose.FAMILY_COPY, at(2), other)

    def test_directive_for_other_child_rejected(self):
        d = directive("dir-1", P, Scope())
        other = child().__class__("ch-other", BIRTH_15)
        with pytest.raises(InvalidDirectiveError, match="different child"):
            ENGINE.compile(other, [d])

    def test_duplicate_directive_ids_rejected(self):
        d = directive("dir-1", P, Scope())
        with pytest.raises(InvalidDirectiveError, match="twice"):
            fam(d, d)
