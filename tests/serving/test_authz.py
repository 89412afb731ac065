"""Authorisation for every route x role (object-level authorisation is OWASP API #1)."""

from __future__ import annotations

import pytest

from tests.serving.conftest import auth

ROLES = ["north", "south", "both", "analyst", "admin"]

# route template -> expected status per key. "{north_pid}" etc. are filled from the fixture truth.
MATRIX: dict[str, dict[str, int]] = {
    "/localities/North/rising-risk": {"north": 200, "south": 403, "both": 200, "analyst": 200, "admin": 200},
    "/localities/South/rising-risk?format=csv": {"north": 403, "south": 200, "both": 200, "analyst": 200, "admin": 200},
    # An unknown locality looks exactly like someone else's locality to a locality key.
    "/localities/Nowhere/rising-risk": {"north": 403, "south": 403, "both": 403, "analyst": 404, "admin": 404},
    "/residents/{north_pid}/score": {"north": 200, "south": 404, "both": 200, "analyst": 200, "admin": 200},
    "/residents/{south_pid}/score": {"north": 404, "south": 200, "both": 200, "analyst": 200, "admin": 200},
    "/residents/{absent}/score": {"north": 404, "south": 404, "both": 404, "analyst": 404, "admin": 404},
    # No champion registered in this home: authorised callers get 404, never 401/403.
    "/models/current": {"north": 404, "south": 404, "both": 404, "analyst": 404, "admin": 404},
    "/summary": {"north": 200, "south": 200, "both": 200, "analyst": 200, "admin": 200},
    "/audit": {"north": 403, "south": 403, "both": 403, "analyst": 403, "admin": 200},
    "/ui/localities/North": {"north": 200, "south": 403, "both": 200, "analyst": 200, "admin": 200},
}


def _fill(template: str, scored) -> str:
    return template.format(
        north_pid=scored.in_locality("North")[0].person_id,
        south_pid=scored.in_locality("South")[0].person_id,
        absent=scored.absent,
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(MATRIX))
def test_route_role_matrix(client, keys, scored, route, role):
    r = client.get(_fill(route, scored), headers=auth(keys[role]), follow_redirects=False)
    assert r.status_code == MATRIX[route][role], r.text


@pytest.mark.parametrize("route", [r for r in MATRIX if not r.startswith("/ui")])
@pytest.mark.parametrize("credential", ["none", "revoked", "malformed", "wrong_secret"])
def test_unauthenticated_api_calls_get_401(client, keys, scored, route, credential):
    headers = {
        "none": {},
        "revoked": auth(keys["revoked"]),
        "malformed": auth("hello"),
        "wrong_secret": auth(keys["north"][:-4] + "AAAA"),
    }[credential]
    r = client.get(_fill(route, scored), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("credential", ["none", "revoked"])
def test_unauthenticated_web_page_goes_to_login(client, keys, credential):
    headers = {} if credential == "none" else auth(keys["revoked"])
    r = client.get("/ui/localities/North", headers=headers, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"


def test_out_of_scope_resident_is_indistinguishable_from_absent(client, keys, scored):
    north_pid = scored.in_locality("North")[0].person_id
    other = client.get(f"/residents/{north_pid}/score", headers=auth(keys["south"]))
    absent = client.get(f"/residents/{scored.absent}/score", headers=auth(keys["south"]))
    assert (other.status_code, other.content) == (absent.status_code, absent.content)


def test_other_locality_is_indistinguishable_from_unknown_locality(client, keys):
    other = client.get("/localities/South/rising-risk", headers=auth(keys["north"]))
    unknown = client.get("/localities/Nowhere/rising-risk", headers=auth(keys["north"]))
    assert (other.status_code, other.content) == (unknown.status_code, unknown.content)


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_nhs_numbers_never_reach_analyst_or_admin(client, keys, scored, role):
    person = scored.in_locality("North")[0]
    for path in (f"/residents/{person.person_id}/score", "/localities/North/rising-risk?format=csv",
                 "/localities/North/rising-risk", "/ui/localities/North"):
        r = client.get(path, headers=auth(keys[role]))
        assert r.status_code == 200
        assert person.nhs_number not in r.text


def test_multi_locality_key_gets_nhs_numbers_for_both(client, keys, scored):
    for locality in ("North", "South"):
        person = scored.in_locality(locality)[0]
        body = client.get(f"/residents/{person.person_id}/score", headers=auth(keys["both"])).json()
        assert body["nhs_number"] == person.nhs_number


@pytest.mark.parametrize(
    ("key_id", "role", "localities"),
    [
        ("00000000000000a1", "viewer", []),  # a role the code does not know
        ("00000000000000a2", "Locality", ["North"]),  # near-miss spelling
        ("00000000000000a3", "locality", "East"),  # scope stored as a string, not a list
    ],
)
def test_keys_rows_create_key_could_not_write_are_refused(client, serving_settings, scored, key_id, role, localities):
    """Fail closed: such a row (hand edit, bad migration) must not fall through to "sees every locality"."""
    import hashlib
    from datetime import UTC, datetime

    from upstream.store import api_keys, get_engine

    secret = "s" * 30
    with get_engine(serving_settings.db_url).begin() as conn:
        conn.execute(api_keys.delete().where(api_keys.c.key_id == key_id))
        conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                key_hash=hashlib.sha256(secret.encode()).hexdigest(),
                role=role,
                localities=localities,
                created_at=datetime.now(UTC),
            )
        )
    key = f"ups_{key_id}_{secret}"
    assert client.get("/localities/South/rising-risk", headers=auth(key)).status_code == 401
    # "East" as a string would have scoped the key to the localities "E", "a", "s", "t".
    assert client.get("/localities/East/rising-risk", headers=auth(key)).status_code == 401
    assert client.get("/summary", headers=auth(key)).status_code == 401


def test_principal_with_unknown_role_sees_no_locality():
    from serving.keys import Principal

    assert Principal("k", "viewer", ()).may_see_locality("North") is False
    assert Principal("k", "analyst", ()).may_see_locality("North") is True
    assert Principal("k", "locality", ("South",)).may_see_locality("North") is False


def test_locality_names_follow_the_ingest_contract(tmp_path):
    """Every locality ingest accepts can be scoped and served; one ingest rejects cannot be."""
    from serving.keys import create_key
    from upstream.errors import UpstreamError
    from upstream.store import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'k.db'}")
    assert create_key(engine, "locality", ["Newcastle (West)", "St. Mary's & Hoo"]).startswith("ups_")
    with pytest.raises(UpstreamError, match="invalid locality name"):
        create_key(engine, "locality", ["North/East"])  # "/" cannot be one URL path segment
