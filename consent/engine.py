"""The pure consent decision engine.

``ConsentEngine(load_ruleset()).compile(child, directives, overrides)`` builds a
:class:`~consent.evaluation.DirectiveSet` (validated and pre-indexed once per child);
``engine.decide(info, recipient, purpose, at, family)`` then applies the rules in order and returns
a :class:`~consent.model.Decision`. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from consent.directives import Directive
from consent.errors import InvalidDirectiveError, InvalidOverrideError, InvalidRequestError
from consent.evaluation import DirectiveSet
from consent.model import (
    STRICTNESS,
    Basis,
    Child,
    Decision,
    DirectiveDecision,
    Grantor,
    Information,
    Outcome,
    Override,
    Purpose,
    Recipient,
    RecipientKind,
    sixteenth_birthday,
)
from consent.ruleset import RuleSet, load_ruleset

_DENY = DirectiveDecision.DENY
_PERMIT = DirectiveDecision.PERMIT


class ConsentEngine:
    """Decides PERMIT / DENY / HOLD for one share, under one versioned rule set."""

    def __init__(self, ruleset: RuleSet | None = None) -> None:
        self.ruleset = ruleset if ruleset is not None else load_ruleset()
        rs = self.ruleset
        self._reason = {rid: rule.reason for rid, rule in rs.rules.items()}
        self._hold_reason = rs.rule("R1-disclosure-hold").reason
        self._always_restricted = rs.restricted_categories

    # -- compilation ---------------------------------------------------------------------------------
    def compile(
        self, child: Child, directives: Iterable[Directive] = (), overrides: Iterable[Override] = ()
    ) -> DirectiveSet:
        """Validate and pre-index one child's directives and overrides (do this once, decide many times)."""
        ds = tuple(sorted(directives, key=lambda d: d.id))
        seen: set[str] = set()
        for d in ds:
            if d.id in seen:
                raise InvalidDirectiveError(f"directive id {d.id} is used twice")
            seen.add(d.id)
            if d.child_id != child.id:
                raise InvalidDirectiveError(f"directive {d.id} is for a different child than this set")
            if d.made_by_role is Grantor.YOUNG_PERSON and not child.young_person_controls(d.made_at):
                raise InvalidDirectiveError(
                    f"directive {d.id}: a young person can make directives only from age "
                    f"{self.ruleset.young_person_age} or once recorded as competent"
                )
        ovs = tuple(sorted(overrides, key=lambda o: o.id))
        limit = timedelta(days=self.ruleset.max_override_days)
        for o in ovs:
            if o.child_id != child.id:
                raise InvalidOverrideError(f"override {o.id} is for a different child than this set")
            if o.end - o.start > limit:
                raise InvalidOverrideError(
                    f"override {o.id} lasts longer than the {self.ruleset.max_override_days}-day limit"
                )
            if len(o.justification.strip()) < self.ruleset.min_justification_chars:
                raise InvalidOverrideError(
                    f"override {o.id}: the justification must be at least "
                    f"{self.ruleset.min_justification_chars} characters"
                )
        return DirectiveSet(child, ds, ovs, self._always_restricted)

    # -- decisions -----------------------------------------------------------------------------------
    def _d(
        self,
        rule_id: str,
        outcome: Outcome,
        basis: Basis,
        reasons: tuple[str, ...] | None = None,
        directive_ids: tuple[str, ...] = (),
        *,
        notify_family: bool = False,
        requires_ig_review: bool = False,
        override_id: str | None = None,
    ) -> Decision:
        return Decision(
            outcome,
            basis,
            rule_id,
            self.ruleset.version,
            reasons if reasons is not None else (self._reason[rule_id],),
            directive_ids,
            notify_family,
            requires_ig_review,
            override_id,
        )

    def _held(self, d: Decision, info: Information) -> Decision:
        """Rule 1 disclosure hold: a permitted share waits while the hold is in force."""
        if not (info.disclosure_hold and not info.released):
            return d
        return Decision(
            Outcome.HOLD,
            d.basis,
            "R1-disclosure-hold",
            d.ruleset_version,
            (*d.reasons, self._hold_reason),
            d.directive_ids,
            d.notify_family,
            d.requires_ig_review,
            d.override_id,
        )

    def decide(
        self, info: Information, recipient: Recipient, purpose: Purpose, at: datetime, family: DirectiveSet
    ) -> Decision:
        """Decide whether ``info`` may go to ``recipient`` for ``purpose`` at time ``at``."""
        if at.tzinfo is None:
            raise InvalidRequestError("the decision time must be a timezone-aware datetime")
        if info.in_record_of != family.child.id:
            raise InvalidRequestError("the information is not in the record of this directive set's child")

        # Rule 8: information about a parent or sibling is not shared as part of this child's record.
        if info.about != info.in_record_of:
            if recipient.is_family_side and recipient.person_id == info.about:
                return self._held(self._d("R1-own-record", Outcome.PERMIT, Basis.RIGHT_OF_ACCESS), info)
            return self._d("R8-third-party", Outcome.DENY, Basis.NONE)

        # Rule 7: safeguarding override (named person, justification, time-limited, in scope).
        if purpose is Purpose.SAFEGUARDING:
            for ov in family.overrides:
                if ov.applies(info, recipient, purpose, at):
                    return self._d(
                        "R7-safeguarding-override",
                        Outcome.PERMIT,
                        Basis.SAFEGUARDING,
                        requires_ig_review=True,
                        override_id=ov.id,
                    )

        # Rule 6: statutory advice for an EHC needs assessment, with notice to the family.
        st = self.ruleset.statutory_ehc
        if (
            purpose is st.purpose
            and not recipient.is_family_side
            and recipient.service in st.recipient_services
            and info.kind in st.kinds
            and info.category in st.categories
        ):
            ev = family.evaluate(info, recipient, purpose, at)
            reasons: tuple[str, ...] = (self._reason["R6-statutory-ehc-advice"],)
            if ev.deny_ids:
                reasons += (
                    "A family directive refuses this share; a refusal does not override a statutory duty, "
                    "so the information is shared and the family is told about it.",
                )
            d = self._d(
                "R6-statutory-ehc-advice",
                Outcome.PERMIT,
                Basis.STATUTORY_DUTY,
                reasons,
                ev.deny_ids,
                notify_family=True,
            )
            return self._held(d, info)

        # Rule 1: the family's own copy / the young person's own record.
        if recipient.is_family_side:
            return self._family(info, recipient, purpose, at, family)

        # Rules 5, 4, 2, 3: professionals and coordinators.
        ev = family.evaluate(info, recipient, purpose, at)
        if ev.decision is _DENY:
            return self._d("R5-directive-deny", Outcome.DENY, Basis.NONE, None, ev.directive_ids)
        same_agency = recipient.agency_id == info.agency_id
        if ev.decision is _PERMIT:
            d = self._d("R5-directive-permit", Outcome.PERMIT, Basis.CONSENT, None, ev.directive_ids)
            return d if same_agency else self._held(d, info)
        if same_agency and purpose is Purpose.DIRECT_CARE:
            return self._d("R2-same-agency-direct-care", Outcome.PERMIT, Basis.DIRECT_CARE)
        if info.category in self._always_restricted:
            return self._d("R4-restricted-category", Outcome.DENY, Basis.NONE)
        return self._d("R3-default-deny", Outcome.DENY, Basis.NONE)

    def _family(
        self, info: Information, recipient: Recipient, purpose: Purpose, at: datetime, family: DirectiveSet
    ) -> Decision:
        yp_controls = family.child.young_person_controls(at)
        if recipient.kind is RecipientKind.YOUNG_PERSON:
            if recipient.person_id != info.in_record_of or not yp_controls:
                return self._d("R1-not-own-record", Outcome.DENY, Basis.NONE)
            return self._held(self._d("R1-own-record", Outcome.PERMIT, Basis.RIGHT_OF_ACCESS), info)
        if not recipient.has_parental_responsibility:
            return self._d("R1-no-parental-responsibility", Outcome.DENY, Basis.NONE)
        if yp_controls:
            ev = family.evaluate(info, recipient, purpose, at, young_person_only=True)
            if ev.decision is _DENY:
                return self._d("R5-directive-deny", Outcome.DENY, Basis.NONE, None, ev.directive_ids)
            if ev.decision is _PERMIT:
                d = self._d("R5-directive-permit", Outcome.PERMIT, Basis.CONSENT, None, ev.directive_ids)
                return self._held(d, info)
            if info.category in self._always_restricted:
                return self._d("R1-young-person-controls", Outcome.DENY, Basis.NONE)
        if info.kind not in self.ruleset.family_copy_kinds:
            return self._d("R1-kind-not-copied", Outcome.DENY, Basis.NONE)
        if info.category in self.ruleset.family_excluded_categories:
            return self._d("R1-family-excluded-category", Outcome.DENY, Basis.NONE)
        return self._held(self._d("R1-family-copy", Outcome.PERMIT, Basis.RIGHT_OF_ACCESS), info)

    def decide_strictest(
        self,
        info: Information,
        recipient: Recipient,
        purpose: Purpose,
        family: DirectiveSet,
        *,
        at_event_time: datetime,
        at_delivery_time: datetime,
    ) -> Decision:
        """Decide under the consent in force at the event's time and at delivery; return the stricter.

        DENY > HOLD > PERMIT; when both are equally strict the delivery-time decision is returned.
        """
        at_event = self.decide(info, recipient, purpose, at_event_time, family)
        at_delivery = self.decide(info, recipient, purpose, at_delivery_time, family)
        return at_event if STRICTNESS[at_event.outcome] > STRICTNESS[at_delivery.outcome] else at_delivery


_DEFAULT_ENGINE: ConsentEngine | None = None


def default_engine() -> ConsentEngine:
    """A process-wide engine using the packaged rule set."""
    global _DEFAULT_ENGINE
    if _DEFAULT_ENGINE is None:
        _DEFAULT_ENGINE = ConsentEngine()
    return _DEFAULT_ENGINE


def decide(
    info: Information,
    recipient: Recipient,
    purpose: Purpose,
    at: datetime,
    family: DirectiveSet,
) -> Decision:
    """Convenience: :meth:`ConsentEngine.decide` with the packaged rule set."""
    return default_engine().decide(info, recipient, purpose, at, family)


def decide_strictest(
    info: Information,
    recipient: Recipient,
    purpose: Purpose,
    family: DirectiveSet,
    *,
    at_event_time: datetime,
    at_delivery_time: datetime,
) -> Decision:
    """Convenience: :meth:`ConsentEngine.decide_strictest` with the packaged rule set."""
    return default_engine().decide_strictest(
        info, recipient, purpose, family, at_event_time=at_event_time, at_delivery_time=at_delivery_time
    )


def directives_needing_confirmation(
    directives: Iterable[Directive], birth_date: date, today: date
) -> tuple[Directive, ...]:
    """Parent-made directives still in force that the young person (now 16+) must confirm.

    ``birth_date`` is used only to compute the sixteenth birthday; it is never stored or logged.
    """
    if today < sixteenth_birthday(birth_date):
        return ()
    out = [
        d
        for d in directives
        if d.made_by_role is Grantor.PARENT
        and d.confirmed_by_young_person_at is None
        and (d.withdrawn_at is None or d.withdrawn_at.date() > today)
        and (d.scope.period is None or d.scope.period.end is None or d.scope.period.end.date() > today)
    ]
    return tuple(sorted(out, key=lambda d: d.id))


_OUTCOME_WORDS = {Outcome.PERMIT: "PERMITTED", Outcome.DENY: "REFUSED", Outcome.HOLD: "ON HOLD"}
_BASIS_WORDS = {
    Basis.CONSENT: "consent given by the family or young person",
    Basis.STATUTORY_DUTY: "a statutory duty",
    Basis.SAFEGUARDING: "a safeguarding override",
    Basis.RIGHT_OF_ACCESS: "the family's right to their child's information",
    Basis.DIRECT_CARE: "direct care within the producing organisation (implied consent)",
    Basis.NONE: "no lawful basis to share",
}


def explain(decision: Decision) -> str:
    """A plain-English, multi-line explanation of a decision, for a CLI or an audit view."""
    lines = [
        f"{_OUTCOME_WORDS[decision.outcome]} on the basis of {_BASIS_WORDS[decision.basis]}.",
        f"Decided by rule {decision.rule_id} (rule set {decision.ruleset_version}).",
    ]
    lines += [f"- {r}" for r in decision.reasons]
    if decision.directive_ids:
        lines.append(f"Directives that applied: {', '.join(decision.directive_ids)}.")
    if decision.override_id:
        lines.append(f"Safeguarding override: {decision.override_id}.")
    if decision.notify_family:
        lines.append("The family must be told that this information was shared.")
    if decision.requires_ig_review:
        lines.append("This share must be reviewed by information governance.")
    return "\n".join(lines)
