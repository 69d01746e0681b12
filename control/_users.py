"""Users: created on first sight of an identity, reading and changing oneself, dev login."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from parley.control.v1 import resources_pb2 as res

from ._auth import Identity, Principal, issue_dev_token
from ._domain import UseCases, new_id, utcnow
from ._errors import InvalidArgument, NotFound, PermissionDenied
from ._models import UserRow
from ._repos import Users


class UserUseCases(UseCases):
    async def user_for(self, identity: Identity) -> UserRow:
        # An identity provider may send longer claims than the columns hold: cut, never fail.
        identity = Identity(
            subject=identity.subject[:255], email=identity.email[:320], display_name=identity.display_name[:100]
        )
        return await self._user_for(identity)

    async def _user_for(self, identity: Identity) -> UserRow:
        """The user behind ``identity``, created on first sight. The e-mail follows the identity
        provider; the display name is taken from it once, then belongs to the user."""
        async with self._reads() as session:  # the common case: known user, nothing to change
            known = await Users(session).by_subject(identity.subject)
        if known is not None and (not identity.email or identity.email == known.email):
            return known
        async with self._writes.begin() as session:
            users = Users(session)
            row = await users.by_subject(identity.subject)
            now = utcnow()
            if row is None:
                row = UserRow(
                    id=new_id(),
                    subject=identity.subject,
                    email=identity.email,
                    display_name=identity.display_name or identity.subject,
                    locale="",
                    created_at=now,
                    updated_at=now,
                )
                users.add(row)
                try:
                    await session.flush()
                except IntegrityError:
                    # Another replica created it at the same moment: use theirs.
                    await session.rollback()
                    return await self._user_for(identity)
            elif identity.email and identity.email != row.email:
                row.email = identity.email
                row.updated_at = now
            return row

    async def dev_login(self, identity: Identity) -> tuple[str, datetime, UserRow]:
        if not self.settings.dev_login:
            raise PermissionDenied(
                "dev login is disabled; log in through the identity provider", reason="DEV_LOGIN_DISABLED"
            )
        user = await self.user_for(identity)
        token, expires = issue_dev_token(self.settings, identity, ttl=timedelta(hours=12))
        return token, expires, user

    async def _user_row(self, user_id: str) -> UserRow:
        async with self._reads() as session:
            row = await Users(session).get(user_id)
        if row is None:
            raise NotFound("user not found")
        return row

    def _own_user_id(self, caller: Principal, user: str) -> str:
        user_id = caller.require_user()
        if user not in ("me", user_id):
            raise PermissionDenied("users may read and change only themselves")
        return user_id

    async def get_user(self, caller: Principal, user: str) -> UserRow:
        return await self._user_row(self._own_user_id(caller, user))

    async def update_user(self, caller: Principal, user: str, values: res.User, paths: Sequence[str]) -> UserRow:
        user_id = self._own_user_id(caller, user)
        async with self._writes.begin() as session:
            row = await Users(session).get(user_id)
            if row is None:
                raise NotFound("user not found")
            if "display_name" in paths:
                if not values.display_name.strip():
                    raise InvalidArgument.field("user.display_name", "must not be blank")
                row.display_name = values.display_name.strip()
            if "locale" in paths:
                row.locale = values.locale
            row.updated_at = utcnow()
            return row
