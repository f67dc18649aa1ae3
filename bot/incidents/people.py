"""Who may hold an incident role: a person the workspace knows, active, not a bot.

Roles are how Firebreak reaches people: the commander is invited, named in the
topic and nudged by every reminder. A bot (Firebreak itself included), a
deactivated account or an ID the workspace does not know would take the role
and leave nobody nudged, so each is refused when it is assigned, with
`users.info` as the authority.
"""

from __future__ import annotations

from bot.errors import UserError
from bot.gateway import ChatGateway
from bot.mrkdwn import escape, mention


async def check_assignable(chat: ChatGateway, user_id: str, role: str) -> None:
    """Return when `user_id` can be the `role`; otherwise raise a `UserError` saying why.

    A Slack failure (`ChatError`) propagates: the requester is told Slack did not
    answer, and nothing is assigned on a guess.
    """
    example = f"Mention a person, e.g. `/incident assign {role} @alice`."
    if user_id == await chat.bot_user_id():
        raise UserError(
            f"Firebreak can't be the {role}: roles go to people, whom the reminders "
            f"nudge. {example}"
        )
    user = await chat.user(user_id)
    if user is None:
        raise UserError(
            f"This workspace has no user `{escape(user_id)}`, so they can't be the {role}. "
            f"{example}"
        )
    if user.is_bot:
        raise UserError(
            f"{mention(user_id)} is a bot, so it can't be the {role}: roles go to people, "
            f"whom the reminders nudge. {example}"
        )
    if user.deleted:
        raise UserError(
            f"{escape(user.name)}'s account is deactivated, so they can't be the {role}. {example}"
        )
