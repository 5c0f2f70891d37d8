"""What a directory's groups make of a Countersign account.

OIDC_GROUP_MAP pairs the provider's group names with Countersign's groups
(`hotel-frontdesk=front-desk,hotel-duty-managers=managers,hotel-compliance=compliance`).
At every sign-in the account's mapped groups become exactly those its claim names: a group
removed in the directory is removed here at the next sign-in. Groups outside the map (given by
hand in the admin) are left alone. Someone whose claim maps to no Countersign group and to no
superuser group has no role here and is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Roles:
    groups: frozenset[str]
    superuser: bool

    @property
    def any(self) -> bool:
        return bool(self.groups) or self.superuser


def group_map() -> dict[str, str]:
    """OIDC_GROUP_MAP as {provider group: Countersign group}."""
    pairs: dict[str, str] = {}
    for item in settings.OIDC_GROUP_MAP:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ImproperlyConfigured(f"OIDC_GROUP_MAP: {item!r} is not provider-group=countersign-group")
        pairs[source.strip()] = target.strip()
    return pairs


def claimed_groups(claims: dict[str, object]) -> list[str]:
    """The provider's group names in the configured claim (a list, or one string)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def roles_for(claims: dict[str, object]) -> Roles:
    mapping = group_map()
    names = claimed_groups(claims)
    return Roles(
        groups=frozenset(mapping[name] for name in names if name in mapping),
        superuser=any(name in settings.OIDC_SUPERUSER_GROUPS for name in names),
    )


def apply(user: object, roles: Roles, managed: Iterable[str] | None = None) -> None:
    """Give `user` exactly the mapped groups of `roles`, among the groups the map manages."""
    from django.contrib.auth.models import AbstractUser

    assert isinstance(user, AbstractUser)
    managed_names = set(managed if managed is not None else group_map().values())
    current = {g.name for g in user.groups.filter(name__in=managed_names)}
    for name in current - roles.groups:
        user.groups.remove(Group.objects.get(name=name))
    for name in roles.groups - current:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    user.is_staff = True
    # The directory decides who is a superuser only when OIDC_SUPERUSER_GROUPS names its groups;
    # otherwise that stays what the admin set by hand.
    if settings.OIDC_SUPERUSER_GROUPS:
        user.is_superuser = roles.superuser
    user.save(update_fields=["is_staff", "is_superuser"])
