"""The operators' view (`/admin`, only with `ADMIN_TOKEN`): live rooms, a room's state and log
with hidden information marked, a game's replay, closing a room."""
