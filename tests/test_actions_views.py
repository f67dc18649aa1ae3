"""The cards of runbook actions stay inside Slack's limits whatever the executors return."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.actions import views
from bot.executors import ExecutionResult
from emulator.blockkit import check_message
from handlers import blockkit

HOSTILE = "<!channel> & <https://evil|docs> ``` end of block\n"


def section_texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


@pytest.mark.parametrize("size", [10, 2_990, 3_000, 50_000])
def test_output_fits_one_section_and_says_when_it_was_cut(size: int) -> None:
    output = (HOSTILE * (size // len(HOSTILE) + 1))[:size]
    message = views.output_message("logs checkout", output)
    check_message(**blockkit.message(message.card))  # raises on any Block Kit violation
    [text] = section_texts(blockkit.blocks(message.card))
    assert len(text) <= views.SECTION_MAX
    assert text.startswith("```\n") and text.count("```") == 2  # nothing breaks out
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert message.truncated == (size > 2_000)
    assert ("full output is attached" in text) == message.truncated
    if message.truncated:
        body = text.split("```")[1]
        assert not body.rstrip("\n…").endswith("&am")  # an entity is never split


def test_a_long_table_is_cut_on_a_line_boundary() -> None:
    rows = "\n".join(f"checkout-{i:04d}  1/1  Running  0  5m" for i in range(500))
    block, cut = views.code_block(rows, 3000)
    assert cut and len(block) <= 3000
    kept = block.removeprefix("```\n").removesuffix("\n…\n```").splitlines()
    assert all(line.endswith("5m") for line in kept)


def proposal(output: str = "spec.replicas: 3 -> 6", summary: str = "would scale") -> views.Proposal:
    return views.Proposal(
        id=42,
        command="scale checkout replicas=6",
        help="Set the replica count",
        requested_by="U0ALICE",
        dry_run_summary=summary,
        dry_run_output=output,
        expires_at=datetime(2024, 5, 1, 14, 10, tzinfo=UTC),
    )


def test_the_proposal_has_confirm_and_cancel_carrying_the_pending_id() -> None:
    message = views.proposal(proposal())
    check_message(**blockkit.message(message.card))
    [actions] = [b for b in blockkit.blocks(message.card) if b["type"] == "actions"]
    buttons = {e["action_id"]: e["value"] for e in actions["elements"]}
    assert buttons == {views.CONFIRM_ACTION: "42", views.CANCEL_ACTION: "42"}
    texts = "\n".join(section_texts(blockkit.blocks(message.card)))
    assert "<@U0ALICE>" in texts and "*Dry run:* would scale" in texts
    assert "spec.replicas: 3 -&gt; 6" in texts


def test_a_huge_dry_run_still_fits_and_the_decision_removes_the_buttons() -> None:
    big = proposal(output=HOSTILE * 500, summary="x" * 5_000)
    message = views.proposal(big)
    check_message(**blockkit.message(message.card))
    assert all(len(t) <= views.SECTION_MAX for t in section_texts(blockkit.blocks(message.card)))
    done = views.decided(big, ":white_check_mark: Confirmed by <@U0BOB>: " + "y" * 5_000)
    check_message(**blockkit.message(done.card))
    assert not [b for b in blockkit.blocks(done.card) if b["type"] == "actions"]
    assert "Confirmed by <@U0BOB>" in section_texts(blockkit.blocks(done.card))[-1]


def test_the_outcome_reply_fits_one_section() -> None:
    result = ExecutionResult(True, "scaled checkout from 3 to 6" * 100, HOSTILE * 400)
    text = views.outcome("scale checkout replicas=6", "U0BOB", result, outcome="ok")
    assert len(text) <= views.SECTION_MAX and "<!channel>" not in text
    assert text.startswith(":white_check_mark: Confirmed by <@U0BOB>")


def test_the_summary_escapes_executor_text() -> None:
    result = ExecutionResult(False, "health: 500 <!here>", "")
    message = views.diagnostic_summary("health checkout", "U0ALICE", result, error=False)
    check_message(**blockkit.message(message.card))
    [text] = section_texts(blockkit.blocks(message.card))
    assert text.startswith(":warning: `health checkout` found: health: 500 &lt;!here&gt;")
