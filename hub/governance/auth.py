"""Authentication (bearer JWTs) and the authorisation policy, as data.

Tokens
    Embedded default: the hub signs its own HS256 tokens (``hub token create``) with a key created
    on first start in ``<data dir>/keys/jwt.key`` (mode 0600) or given by ``HUB_JWT_KEY[_FILE]``.
    Production: tokens from an OIDC issuer (``HUB_OIDC_ISSUER``), checked against its JWKS
    (``HUB_OIDC_JWKS_URL``) for signature, issuer, audience, expiry and not-before, with
    ``HUB_JWT_LEEWAY`` seconds of clock skew. Claims: ``sub``, ``role`` and, by role, ``agency``
    (agency users), ``household`` and ``member`` (parents and young people). With OIDC configured
    the hub's own tokens are refused; the issuer's must use an asymmetric algorithm, and the one
    the published key names (``alg: none`` and HS256 signed with a public key never verify). The
    key set is cached ``HUB_OIDC_JWKS_LIFESPAN`` seconds and refetched early for an unknown key id
    (key rotation). A refused token answers 401 with the kind of failure, never the token.

Policy
    :data:`POLICY` maps every route (method + path template) to the roles allowed and the
    relationship that must hold for the resource in the path: a coordinator's caseload, the
    caller's own household or own record, the caller's own agency or coordinator id. A route not
    in the table is refused (deny by default; a test checks every route is listed). A request
    outside the caller's relationship gets 404, the same answer as a record that does not exist.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt

from hub.core.errors import AuthError, ConfigError, ForbiddenError, NotFoundError
from hub.core.logging import get_logger
from hub.core.privacy import pseudonymous
from hub.core.settings import Settings

log = get_logger(__name__)

Role = Literal["coordinator", "agency", "parent", "young_person", "ig_officer", "admin", "monitor",
               "safeguarding_lead", "commissioner"]
ROLES: tuple[str, ...] = ("coordinator", "agency", "parent", "young_person", "ig_officer", "admin", "monitor",
                          "safeguarding_lead", "commissioner")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    agency: str | None = None
    household: str | None = None
    member: str | None = None
    reason: str | None = None  # an IG officer's recorded reason for looking at clinical content


def load_or_create_signing_key(settings: Settings) -> bytes:
    if settings.jwt_key.get_secret_value():
        return settings.jwt_key.get_secret_value().encode()
    path = settings.jwt_key_file or settings.data_dir / "keys" / "jwt.key"
    if path.exists():
        return path.read_bytes().strip()
    if settings.jwt_key_file is not None:
        raise ConfigError(f"JWT key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


#: Signature algorithms accepted from an OIDC issuer: asymmetric only, so a token can never be
#: checked against a published public key as if it were a shared HMAC secret.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

#: What a refused token is told, by the kind of failure; never the token, its key id or PyJWT's text.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token is not for this service (audience)"),
    (jwt.InvalidIssuerError, "token is not from a trusted issuer"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.PyJWKClientConnectionError, "the identity provider's signing keys could not be fetched"),
    (jwt.PyJWKClientError, "token is not signed by a key the identity provider publishes"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
)


def _refusal(exc: jwt.PyJWTError) -> str:
    return next((text for kind, text in _REFUSALS if isinstance(exc, kind)), "token is not valid")


class TokenService:
    """Creates the hub's own tokens and verifies bearer tokens.

    With ``HUB_OIDC_ISSUER`` and ``HUB_OIDC_JWKS_URL`` set, only the issuer's tokens are accepted
    and the hub neither makes nor accepts its own: one source of identity in production, so a
    signing key on the hub's disk is not a second way in that the identity provider cannot revoke.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        if settings.oidc_issuer or settings.oidc_jwks_url:
            if not (settings.oidc_issuer and settings.oidc_jwks_url):
                raise ConfigError("HUB_OIDC_ISSUER and HUB_OIDC_JWKS_URL must be set together")
            # No per-key cache (it never expires): a key the issuer withdraws stops verifying once
            # the cached key set ages out. An unknown key id refetches the set, at most once a cooldown.
            self._jwks = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=False,
                                         lifespan=settings.oidc_jwks_lifespan,
                                         cooldown_duration=settings.oidc_jwks_cooldown, timeout=5)
        self.key = b"" if self._jwks is not None else load_or_create_signing_key(settings)

    @property
    def uses_oidc(self) -> bool:
        """Verifying may fetch the issuer's key set over the network (call it off the event loop)."""
        return self._jwks is not None

    def create(self, subject: str, role: str, *, ttl: int = 3600, agency: str | None = None,
               household: str | None = None, member: str | None = None) -> str:
        if self._jwks is not None:
            raise ConfigError("this hub accepts tokens from its OIDC issuer only (HUB_OIDC_ISSUER is set)")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}")
        if not pseudonymous(subject):
            raise ConfigError(SUBJECT_SHAPED_LIKE_AN_IDENTIFIER)
        now = int(time.time())
        claims: dict[str, Any] = {"sub": subject, "role": role, "iss": self.settings.jwt_issuer,
                                  "aud": self.settings.jwt_audience, "iat": now, "nbf": now, "exp": now + ttl}
        claims.update({k: v for k, v in (("agency", agency), ("household", household), ("member", member)) if v})
        return jwt.encode(claims, self.key, algorithm="HS256")

    def scraper(self, token: str) -> Principal | None:
        """The metrics scraper, when ``token`` is the static HUB_METRICS_TOKEN (or _FILE); else None.

        A credential Prometheus keeps in a Secret and sends on every scrape: it opens ``GET /metrics``
        only (role ``monitor``) and does not expire; rotate it by replacing the Secret.
        """
        expected = self.settings.metrics_token.get_secret_value()
        if not expected and self.settings.metrics_token_file is not None:
            try:
                expected = self.settings.metrics_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"metrics token file {self.settings.metrics_token_file} cannot be read: "
                                  f"{exc.strerror or exc}") from exc
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return Principal(subject="metrics-scraper", role="monitor")
        return None
    def verify_id_token(self, token: str, client_id: str, nonce: str) -> dict[str, Any]:
        """An OIDC ID token's claims after the checks of the authorisation code flow: the issuer's signature,
        issuer, audience (the pages' client id), expiry and the nonce of this sign-in."""
        if self._jwks is None:
            raise AuthError("no OIDC issuer is configured")
        try:
            jwk = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, jwk, algorithms=OIDC_ALGORITHMS, audience=client_id, issuer=self.settings.oidc_issuer,
                leeway=self.settings.jwt_leeway, options={"require": ["exp", "iat", "sub", "nonce"]})
        except jwt.PyJWTError as exc:
            raise AuthError(_refusal(exc)) from None
        if not secrets.compare_digest(str(claims["nonce"]), nonce):
            raise AuthError("the sign-in answer is not for this sign-in (nonce)")
        return claims

    def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            if self._jwks is not None:
                jwk = self._jwks.get_signing_key_from_jwt(token)
                claims = jwt.decode(token, jwk, algorithms=OIDC_ALGORITHMS,
                                    audience=s.oidc_audience or s.jwt_audience, issuer=s.oidc_issuer,
                                    leeway=s.jwt_leeway, options={"require": ["exp", "iat", "sub"]})
            else:
                claims = jwt.decode(token, self.key, algorithms=["HS256"], audience=s.jwt_audience,
                                    issuer=s.jwt_issuer, leeway=s.jwt_leeway,
                                    options={"require": ["exp", "iat", "sub", "role"]})
        except jwt.PyJWTError as exc:
            if isinstance(exc, jwt.PyJWKClientConnectionError):
                log.warning("auth.jwks_unreachable", error=type(exc.__cause__ or exc).__name__)
            raise AuthError(_refusal(exc)) from None
        role = str(claims.get("role", ""))
        if role not in ROLES:
            raise AuthError("token has no recognised role")
        if not pseudonymous(str(claims["sub"])):
            raise AuthError(SUBJECT_SHAPED_LIKE_AN_IDENTIFIER)
        return Principal(str(claims["sub"]), role, _text(claims.get("agency")), _text(claims.get("household")),
                         _text(claims.get("member")))


#: a subject that the audit trail would refuse to name (refused at the door, not half-way through a request)
SUBJECT_SHAPED_LIKE_AN_IDENTIFIER = ("the token's subject is shaped like an NHS number, UPN or date of birth: the "
                                     "hub's audit trail names who acts by pseudonymous ids only; ask for another")


def _text(value: object) -> str | None:
    """A relationship claim as a string, or None: a list or object never matches a path parameter."""
    return value if isinstance(value, str) and value else None


# ---- the policy ----------------------------------------------------------------------------------
Relation = Literal["none", "household", "child", "coordinator", "agency"]


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    relation: Relation = "none"
    audit: str | None = None  # audit action recorded for every allowed call (reads of family data)
    clinical: bool = False  # an IG officer may call it only with a recorded investigation reason
    #: a page for people (hub/pages): signed in by a session cookie, not a bearer token; the page applies
    #: this rule and the rule of every API route whose data it shows
    page: bool = False


def rule(*roles: str, relation: Relation = "none", audit: str | None = None, clinical: bool = False) -> Rule:
    return Rule(frozenset(roles), relation, audit, clinical)


def page(*roles: str, relation: Relation = "none") -> Rule:
    """A page's rule; no roles: open to anyone (the start page, following a sign-in link)."""
    return Rule(frozenset(roles), relation, page=True)


PUBLIC = rule()
FAMILY = ("parent", "young_person")
IG = "ig_officer"
INVESTIGATION_HEADER = "X-Investigation-Reason"

#: (method, path template) -> who may call it. Everything not listed is refused.
POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): rule("monitor", "admin"),
    # ingest: agency systems
    ("POST", "/v1/events"): rule("agency", "admin"),
    ("POST", "/v1/ingest/health"): rule("agency"),
    ("POST", "/v1/ingest/social-care"): rule("agency"),
    ("POST", "/v1/ingest/education"): rule("agency"),
    ("POST", "/fhir/{resource_type}"): rule("agency"),
    ("POST", "/fhir"): rule("agency"),
    ("GET", "/fhir/metadata"): PUBLIC,  # the CapabilityStatement, as FHIR servers publish it
    # households and timelines: coordinators (their caseload), the family (their own household),
    # IG officers only with a recorded investigation reason; every read is audited
    ("GET", "/v1/households"): rule("admin"),
    ("GET", "/v1/agencies"): rule("admin"),  # the agency registry (HUB_AGENCIES_FILE)
    ("POST", "/v1/households"): rule("coordinator", "admin", IG),  # a coordinator: on their own caseload only
    ("GET", "/v1/households/{household_id}/timeline"):
        rule("coordinator", *FAMILY, IG, relation="household", audit="read_timeline", clinical=True),
    ("GET", "/v1/households/{household_id}/children/{child_id}/team"):
        rule("coordinator", *FAMILY, relation="child", audit="read_timeline"),
    ("GET", "/v1/households/{household_id}/appointments"):
        rule("coordinator", *FAMILY, relation="household", audit="read_timeline"),
    ("GET", "/v1/households/{household_id}/stream"):
        rule("coordinator", *FAMILY, relation="household", audit="read_timeline", clinical=True),
    ("GET", "/v1/households/{household_id}/members"): rule("coordinator", "parent", relation="household"),
    ("POST", "/v1/households/{household_id}/members"): rule("coordinator", relation="household"),
    # a link of an identifier linked in another household: only a coordinator of both, IG or admin (a move)
    ("POST", "/v1/households/{household_id}/members/{member_id}/identifiers"):
        rule("coordinator", IG, "admin", relation="household"),
    ("POST", "/v1/households/{household_id}/members/{member_id}/identifiers/unlink"):
        rule("coordinator", IG, "admin", relation="household"),
    # a looked-after child's local authority as consent actor: the household's coordinator or IG (audited)
    ("PUT", "/v1/households/{household_id}/members/{member_id}/corporate-parent"):
        rule("coordinator", IG, relation="household"),
    ("GET", "/v1/coordinators/{coordinator_id}/caseload"): rule("coordinator", relation="coordinator"),
    ("POST", "/v1/coordinators/{coordinator_id}/caseload"): rule("admin"),
    ("GET", "/v1/coordinators/{coordinator_id}/stream"):
        rule("coordinator", relation="coordinator", audit="read_timeline"),
    # consent, sharing, delivery
    ("GET", "/v1/households/{household_id}/children/{child_id}/consents"):
        rule("coordinator", *FAMILY, IG, relation="child"),
    ("POST", "/v1/households/{household_id}/children/{child_id}/consents"):
        rule("coordinator", *FAMILY, relation="child"),
    ("DELETE", "/v1/households/{household_id}/children/{child_id}/consents/{directive_id}"):
        rule("coordinator", *FAMILY, relation="child"),
    ("POST", "/v1/households/{household_id}/children/{child_id}/consents/{directive_id}/confirm"):
        rule("coordinator", *FAMILY, relation="child"),
    # the family's "tell it once" summary (hub/family/summary.py): the family writes it; the coordinator reads it
    # only while the family shares it (the route answers 404 otherwise), as does an agency in the child's team
    ("GET", "/v1/households/{household_id}/children/{child_id}/summary"):
        rule("coordinator", *FAMILY, relation="child", audit="read_timeline"),
    ("PUT", "/v1/households/{household_id}/children/{child_id}/summary"): rule(*FAMILY, relation="child"),
    ("GET", "/v1/agencies/{agency_id}/children/{child_id}/summary"): rule("agency", relation="agency"),
    ("GET", "/v1/households/{household_id}/shares"): rule("coordinator", *FAMILY, IG, relation="household"),
    ("GET", "/v1/households/{household_id}/family-copies"):
        rule(*FAMILY, "coordinator", relation="household", audit="read_report"),
    ("GET", "/v1/households/{household_id}/readiness"): rule("coordinator", relation="household"),
    ("GET", "/v1/households/{household_id}/alerts"): rule("coordinator", relation="household"),
    ("GET", "/v1/households/{household_id}/clocks"): rule("coordinator", relation="household"),
    # a multi-agency referral (a referring professional sends a FHIR ServiceRequest Bundle instead)
    ("POST", "/v1/households/{household_id}/children/{child_id}/referrals"): rule("coordinator", relation="child"),
    ("GET", "/v1/households/{household_id}/referrals"): rule("coordinator", relation="household"),
    ("GET", "/v1/households/{household_id}/referrals/{referral_id}"): rule("coordinator", relation="household"),
    # KPIs: figures over services and agencies, no family's record; those who commission and govern the
    # services read them (a commissioner, IG, an admin), not those whose work or family they measure
    ("GET", "/v1/kpis"): rule("commissioner", IG, "admin"),
    ("POST", "/v1/households/{household_id}/alerts/{alert_id}/acknowledge"): rule("coordinator", relation="household"),
    # the inbox route audits its reads itself, once per household shown (the family's transparency view)
    ("GET", "/v1/agencies/{agency_id}/inbox"): rule("agency", relation="agency"),
    # the minimum team view (hub/sharing/agency_team.py): the route also checks the agency is in the child's
    # team (else 404, as for a child that does not exist) and audits against the child's household
    ("GET", "/v1/agencies/{agency_id}/children/{child_id}/team"): rule("agency", relation="agency"),
    # information governance: audit records and decisions, not clinical content
    ("GET", "/v1/audit/verify"): rule(IG),
    ("GET", "/v1/audit/records"): rule(IG),
    ("GET", "/v1/audit/households/{household_id}/who-has-seen"): rule(IG),
    ("GET", "/v1/audit/withheld"): rule(IG),
    ("GET", "/v1/audit/overrides"): rule(IG),
    ("GET", "/v1/audit/households/{household_id}/consent-history"): rule(IG),
    ("GET", "/v1/audit/export"): rule(IG),
    # erasure of one person: an IG decision (admins configure, they do not decide on personal data)
    ("POST", "/v1/erasures"): rule(IG),
    ("GET", "/v1/agencies/{agency_id}/returns/sen2"): rule(IG, "admin"),  # DfE statutory return, audited by its route
    # the CIN census: IG, or the authority's own social-care system; the route checks the sector and audits
    # the export itself, once it is allowed (hub/api/returns_routes.py)
    ("GET", "/v1/agencies/{agency_id}/returns/cin"): rule(IG, "agency", relation="agency"),
    # the family's own view of who received or viewed their child's information
    ("GET", "/v1/households/{household_id}/transparency"): rule(*FAMILY, relation="household"),
    ("POST", "/v1/agencies/{agency_id}/inbox/{delivery_id}/ack"): rule("agency", relation="agency"),
    # safeguarding (hub/api/safeguarding_routes.py): the producing agency (checked by the route: another
    # agency's entry is 404) or IG releases a disclosure hold; a safeguarding lead or IG makes an override
    ("POST", "/v1/households/{household_id}/children/{child_id}/holds/{event_id}/release"): rule("agency", IG),
    ("POST", "/v1/households/{household_id}/children/{child_id}/overrides"): rule("safeguarding_lead", IG),
    # pages for people (hub/pages): each also applies the rules of the API routes whose data it shows
    ("GET", "/"): page(),
    ("GET", "/sign-in/{token}"): page(),
    ("GET", "/sign-in/oidc"): page(),
    ("GET", "/sign-in/oidc/callback"): page(),
    ("POST", "/sign-in/{token}"): page(),
    ("POST", "/sign-out"): page(*ROLES),
    ("GET", "/caseload"): page("coordinator"),
    ("GET", "/households/{household_id}"): page("coordinator", relation="household"),
    ("GET", "/households/{household_id}/live"): page("coordinator", *FAMILY, relation="household"),
    ("POST", "/households/{household_id}/alerts/{alert_id}/acknowledge"): page("coordinator", relation="household"),
    ("GET", "/family"): page(*FAMILY),
    ("POST", "/family/children/{child_id}/consents"): page(*FAMILY),
    ("POST", "/family/children/{child_id}/consents/{directive_id}/withdraw"): page(*FAMILY),
    ("POST", "/family/children/{child_id}/summary"): page(*FAMILY),
    ("GET", "/kpis"): page("commissioner", IG, "admin"),
    ("GET", "/inbox"): page("agency"),
    ("POST", "/inbox/{delivery_id}/ack"): page("agency"),
    ("GET", "/inbox/children/{child_id}/team"): page("agency"),
    ("GET", "/inbox/sent"): page("agency"),  # the agency's own submissions, from the ingest log
    ("GET", "/governance"): page(IG),
    ("GET", "/governance/household"): page(IG),
    ("POST", "/governance/household/reason"): page(IG),
    ("GET", "/governance/household/timeline"): page(IG),
    ("GET", "/governance/export"): page(IG),
}


def policy_for(method: str, path: str) -> Rule | None:
    return POLICY.get((method.upper(), path))


CaseloadCheck = Callable[[str, str], Awaitable[bool]]


async def authorise(principal: Principal | None, method: str, path: str, params: dict[str, str],
                    on_caseload: CaseloadCheck) -> Rule:
    """Raise AuthError (401), ForbiddenError (403) or NotFoundError (404); return the rule if allowed."""
    policy = policy_for(method, path)
    if policy is None:
        raise ForbiddenError(f"{method} {path} is not open to anyone")
    if policy is PUBLIC or (policy.page and not policy.roles):
        return policy
    if principal is None:
        raise AuthError("a bearer token is required")
    if principal.role not in policy.roles:
        raise ForbiddenError(f"role {principal.role} may not use this route")
    if principal.role == IG:
        if policy.clinical and len((principal.reason or "").strip()) < 10:
            raise ForbiddenError(f"clinical content needs an investigation reason ({INVESTIGATION_HEADER})")
        return policy  # IG officers are not bound to a caseload; every call they make is audited
    if principal.role == "admin" and policy.relation == "household":
        return policy  # only identifier links and unlinks open a household route to an admin
    hh = params.get("household_id")
    if policy.relation in ("household", "child"):
        if principal.role == "coordinator":
            allowed = hh is not None and await on_caseload(principal.subject, hh)
        else:  # parent or young person: their own household
            allowed = hh is not None and principal.household == hh
            if principal.role == "young_person" and policy.relation == "child":
                allowed = allowed and params.get("child_id") == principal.member
        if not allowed:
            raise NotFoundError("no such household")
    elif policy.relation == "coordinator" and params.get("coordinator_id") != principal.subject:
        raise NotFoundError("no such caseload")
    elif policy.relation == "agency" and params.get("agency_id") != principal.agency:
        raise NotFoundError("no such agency")
    return policy


def token_file_default(settings: Settings) -> Path:
    return settings.jwt_key_file or settings.data_dir / "keys" / "jwt.key"
