"""Roles, permissions, department scope, clearance, and the docs table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phantom_spire.security import (
    DEFAULT_SCHEME,
    PERMISSION_TABLE,
    ROLE_PERMISSIONS,
    AccessDenied,
    Level,
    Permission,
    PermissionDenied,
    Principal,
    Resource,
    ResourceHidden,
    Role,
    authorize,
    is_visible,
    listing_scope,
    permission_table_markdown,
)

UNCLASSIFIED, CONFIDENTIAL, SECRET, TOP_SECRET = DEFAULT_SCHEME.levels


def principal(
    role: Role | str = Role.ANALYST,
    *,
    user: str = "ana",
    department: str = "cti-emea",
    clearance: Level = SECRET,
    grants: frozenset[Permission] = frozenset(),
) -> Principal:
    return Principal(user, Role.parse(role), department, clearance, grants)


def task(
    *,
    owner: str | None = "someone",
    department: str | None = "cti-emea",
    level: Level | None = None,
) -> Resource:
    return Resource("task", owner=owner, department=department, level=level)


# --- the table -------------------------------------------------------------------------------


def test_every_permission_is_in_the_table_with_a_description() -> None:
    assert set(PERMISSION_TABLE) == set(Permission)
    assert all(description.strip() for description, _ in PERMISSION_TABLE.values())


def test_role_permissions_are_derived_from_the_one_table() -> None:
    for permission, (_, roles) in PERMISSION_TABLE.items():
        for role in Role:
            assert (permission in ROLE_PERMISSIONS[role]) is (role in roles)


@pytest.mark.parametrize(
    "name",
    [
        "task:create",
        "task:read",
        "task:execute",
        "task:control",
        "task:delete",
        "evidence:collect",
        "schedule:manage",
        "workflow:run",
        "audit:read",
        "admin:keys",
        "indicator:read",
        "task:any-department",
    ],
)
def test_the_issue_permissions_exist_by_name(name: str) -> None:
    assert Permission.parse(name).value == name


def test_viewer_only_reads() -> None:
    viewer = ROLE_PERMISSIONS[Role.VIEWER]
    assert Permission.TASK_READ in viewer
    assert not {p for p in viewer if not p.value.endswith(":read")}


def test_auditor_reads_the_audit_trail_across_departments_but_changes_nothing() -> None:
    auditor = ROLE_PERMISSIONS[Role.AUDITOR]
    assert {
        Permission.AUDIT_READ,
        Permission.AUDIT_VERIFY,
        Permission.TASK_ANY_DEPARTMENT,
    } <= auditor
    changing = {
        Permission.TASK_CREATE,
        Permission.TASK_EXECUTE,
        Permission.TASK_CONTROL,
        Permission.TASK_DELETE,
        Permission.EVIDENCE_COLLECT,
        Permission.ADMIN_KEYS,
        Permission.ADMIN_USERS,
    }
    assert not auditor & changing


def test_responder_collects_evidence_and_analyst_does_not() -> None:
    assert Permission.EVIDENCE_COLLECT in ROLE_PERMISSIONS[Role.RESPONDER]
    assert Permission.EVIDENCE_COLLECT not in ROLE_PERMISSIONS[Role.ANALYST]
    assert ROLE_PERMISSIONS[Role.ANALYST] < ROLE_PERMISSIONS[Role.RESPONDER]


def test_admin_holds_every_permission() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_markdown_table_has_a_row_per_permission_and_a_column_per_role() -> None:
    lines = permission_table_markdown().splitlines()

    assert lines[0] == "| Permission | Meaning | viewer | analyst | responder | admin | auditor |"
    assert len(lines) == 2 + len(Permission)
    delete_row = next(line for line in lines if line.startswith("| `task:delete`"))
    cells = [cell.strip() for cell in delete_row.strip("|").split("|")]
    assert cells[2:] == ["", "", "", "✓", ""]


def test_markdown_table_marks_exactly_the_roles_in_the_table() -> None:
    lines = permission_table_markdown().splitlines()[2:]
    for line, (permission, (_, roles)) in zip(lines, PERMISSION_TABLE.items(), strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == f"`{permission.value}`"
        assert [cells[2 + i] == "✓" for i, _ in enumerate(Role)] == [r in roles for r in Role]


# --- parsing ---------------------------------------------------------------------------------


def test_unknown_role_names_the_value_and_the_roles() -> None:
    with pytest.raises(
        ValueError, match=r"'superuser'.*viewer, analyst, responder, admin, auditor"
    ):
        Role.parse("superuser")


def test_unknown_permission_names_the_value_and_lists_the_permissions() -> None:
    with pytest.raises(ValueError, match=r"'task:explode'.*task:read"):
        authorize(principal(Role.ADMIN), "task:explode")


def test_principal_accepts_role_and_grants_as_strings() -> None:
    p = Principal("u1", "Responder", "soc", SECRET, frozenset({"task:any-department"}))  # type: ignore[arg-type]
    assert p.role is Role.RESPONDER
    assert p.grants == {Permission.TASK_ANY_DEPARTMENT}


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"user_id": ""}, ValueError, "user_id"),
        ({"role": "root"}, ValueError, "'root'"),
        ({"clearance": "SECRET"}, TypeError, "'SECRET'"),
        ({"grants": "task:read"}, TypeError, "'task:read'"),
        ({"grants": frozenset({"task:nope"})}, ValueError, "'task:nope'"),
    ],
)
def test_principal_refuses_bad_fields_naming_them(
    kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    fields: dict[str, object] = {
        "user_id": "u1",
        "role": Role.VIEWER,
        "department": "soc",
        "clearance": SECRET,
    }
    with pytest.raises(error, match=fragment):
        Principal(**(fields | kwargs))  # type: ignore[arg-type]


# --- authorize ---------------------------------------------------------------------------------


def test_analyst_may_create_tasks_without_a_resource() -> None:
    authorize(principal(Role.ANALYST), Permission.TASK_CREATE)


def test_viewer_may_not_create_and_the_message_names_user_permission_and_role() -> None:
    with pytest.raises(PermissionDenied) as caught:
        authorize(principal(Role.VIEWER, user="vic"), "task:create")

    error = caught.value
    assert "'vic'" in str(error) and "task:create" in str(error) and "'viewer'" in str(error)
    assert (error.principal_id, error.permission, error.reason) == ("vic", "task:create", "role")
    assert error.http_status == 403


def test_an_extra_grant_adds_a_permission_the_role_lacks() -> None:
    viewer = principal(Role.VIEWER, grants=frozenset({Permission.TASK_CREATE}))
    authorize(viewer, Permission.TASK_CREATE)
    assert viewer.has("task:create") and not viewer.has("task:delete")


def test_analyst_acts_on_tasks_of_their_department() -> None:
    authorize(principal(Role.ANALYST), Permission.TASK_CONTROL, task(department="cti-emea"))


def test_analyst_may_not_act_on_another_departments_task() -> None:
    with pytest.raises(PermissionDenied) as caught:
        authorize(principal(Role.ANALYST, user="ana"), "task:control", task(department="soc-apac"))

    message = str(caught.value)
    assert caught.value.reason == "department"
    assert "'ana'" in message and "task:control" in message and "task:any-department" in message
    # The other department's name is not needed to explain the refusal, so it is not told.
    assert "soc-apac" not in message


def test_analyst_may_act_on_their_own_task_in_another_department() -> None:
    authorize(
        principal(Role.ANALYST, user="ana"), "task:control", task(owner="ana", department="x")
    )


def test_any_department_grant_lifts_the_department_scope() -> None:
    grants = frozenset({Permission.TASK_ANY_DEPARTMENT})
    authorize(principal(Role.ANALYST, grants=grants), "task:control", task(department="soc-apac"))


def test_ownership_does_not_grant_a_permission_the_role_lacks() -> None:
    with pytest.raises(PermissionDenied, match=r"task:delete"):
        authorize(principal(Role.ANALYST, user="ana"), "task:delete", task(owner="ana"))


def test_auditor_reads_tasks_of_every_department() -> None:
    authorize(principal(Role.AUDITOR), "task:read", task(department="elsewhere"))


def test_unscoped_resource_is_open_to_every_department() -> None:
    authorize(principal(Role.ANALYST), "task:read", task(department=None))


def test_resource_above_clearance_is_hidden_and_reveals_nothing_about_it() -> None:
    secret_task = Resource("task", owner="director-x", department="hq-ops", level=TOP_SECRET)

    with pytest.raises(ResourceHidden) as caught:
        authorize(principal(Role.ANALYST, user="ana", clearance=SECRET), "task:read", secret_task)

    error = caught.value
    message = str(error)
    assert error.http_status == 404 and error.reason == "clearance"
    assert "'ana'" in message and "task:read" in message
    for leak in ("TOP SECRET", "director-x", "hq-ops", "task"):
        assert leak not in message.replace("task:read", "")


def test_hidden_resource_is_not_a_permission_denied_so_a_403_handler_cannot_catch_it() -> None:
    assert not issubclass(ResourceHidden, PermissionDenied)
    assert issubclass(ResourceHidden, AccessDenied)


def test_clearance_is_checked_before_permission_so_a_hidden_id_looks_missing() -> None:
    # A viewer may not delete anything; if the role check came first, deleting a hidden task
    # would answer 403 while a missing id answers 404, revealing that the hidden task exists.
    hidden = task(level=TOP_SECRET)
    with pytest.raises(ResourceHidden):
        authorize(principal(Role.VIEWER, clearance=SECRET), "task:delete", hidden)


def test_clearance_is_checked_before_department_scope() -> None:
    hidden = task(department="other", level=TOP_SECRET)
    with pytest.raises(ResourceHidden):
        authorize(principal(Role.ANALYST, clearance=CONFIDENTIAL), "task:read", hidden)


def test_admin_with_low_clearance_still_cannot_see_above_it() -> None:
    with pytest.raises(ResourceHidden):
        authorize(principal(Role.ADMIN, clearance=CONFIDENTIAL), "task:read", task(level=SECRET))


def test_resource_at_exactly_the_clearance_is_visible() -> None:
    authorize(principal(Role.ANALYST, clearance=SECRET), "task:read", task(level=SECRET))
    assert is_visible(principal(clearance=SECRET), task(level=SECRET))
    assert is_visible(principal(clearance=UNCLASSIFIED), task(level=None))


# --- listing scope ------------------------------------------------------------------------------


def test_listing_scope_for_analyst_is_their_department_and_clearance() -> None:
    scope = listing_scope(principal(Role.ANALYST, user="ana", clearance=CONFIDENTIAL), "task:read")
    assert (scope.max_level, scope.department, scope.owner) == (CONFIDENTIAL, "cti-emea", "ana")


def test_listing_scope_for_auditor_spans_departments() -> None:
    assert listing_scope(principal(Role.AUDITOR), "task:read").department is None


def test_listing_scope_refuses_a_principal_without_the_permission() -> None:
    with pytest.raises(PermissionDenied):
        listing_scope(principal(Role.VIEWER), "audit:read")


_roles = st.sampled_from(list(Role))
_levels = st.sampled_from(DEFAULT_SCHEME.levels)
_departments = st.sampled_from(["a", "b", None])
_users = st.sampled_from(["u1", "u2", None])


@given(
    role=_roles,
    clearance=_levels,
    department=st.sampled_from(["a", "b"]),
    any_department=st.booleans(),
    owner=_users,
    resource_department=_departments,
    level=st.one_of(st.none(), _levels),
)
def test_listing_scope_admits_exactly_what_authorize_allows_to_read(
    role: Role,
    clearance: Level,
    department: str,
    any_department: bool,
    owner: str | None,
    resource_department: str | None,
    level: Level | None,
) -> None:
    grants = frozenset({Permission.TASK_ANY_DEPARTMENT}) if any_department else frozenset()
    p = Principal("u1", role, department, clearance, grants)
    resource = Resource("task", owner=owner, department=resource_department, level=level)

    try:
        authorize(p, Permission.TASK_READ, resource)
        allowed = True
    except AccessDenied:
        allowed = False

    assert listing_scope(p, Permission.TASK_READ).admits(resource) is allowed
