"""The operators' page end to end, in Chromium against a server with an ADMIN_TOKEN.

Over HTTP, a game of mafia is played to its end and another room is left running. The page
asks for the admin token, lists the running room with its players and streams, opens the
finished game, steps through its replay from the first event to the last (which shows the
winner and every role, as the room ended), marks the hidden events of the log as hidden, and
closes the running room, whose players are then refused. Everything waits on the DOM.

Headless Chromium is Debian's (/usr/bin/chromium), as in tests/e2e/test_web_game.py.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect

from tests.e2e.test_web_game import ARTIFACTS, CHROMIUM, open_page, require_chromium
from tests.game_support import new_room, play_round_of_votes, start, state
from tests.support import serve

ADMIN_TOKEN = "operators-page-" + "5" * 32
STEP_MS = 20_000


async def test_the_admin_page_lists_replays_marks_hidden_events_and_closes_a_room(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    expect.set_options(timeout=STEP_MS)
    log = tmp_path / "server.log"
    errors: list[str] = []
    with serve(database_url, log, {"ADMIN_TOKEN": ADMIN_TOKEN}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            finished_id, finished_seats = await new_room(http, 5)
            await start(http, finished_id, finished_seats)
            rng = random.Random(11)
            for _ in range(200):
                if (await play_round_of_votes(http, finished_id, finished_seats, rng))[
                    "status"
                ] == "finished":
                    break
            final = await state(http, finished_id, finished_seats[0])
            assert final["room"]["status"] == "finished"
            live_id, live_seats = await new_room(http, 4)
            await start(http, live_id, live_seats)

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
                try:
                    page = await open_page(browser, errors)
                    page.set_default_timeout(STEP_MS)
                    await page.goto(f"{server.url}/admin")
                    # A wrong token is refused and asked for again; the right one opens the page.
                    await page.get_by_test_id("token-input").fill("not-the-token")
                    await page.get_by_test_id("token-submit").click()
                    await expect(page.get_by_test_id("error")).to_contain_text("refused")
                    await expect(page.get_by_test_id("token-form")).to_be_visible()
                    await page.get_by_test_id("token-input").fill(ADMIN_TOKEN)
                    await page.get_by_test_id("token-submit").click()

                    # The running room is listed: four players, in progress; the finished one too.
                    live = page.locator(f'[data-testid=room-row][data-room-id="{live_id}"]')
                    await expect(live).to_have_attribute("data-status", "in_progress")
                    await expect(live.get_by_test_id("room-players")).to_have_text("4")
                    await expect(live.get_by_test_id("room-streams")).to_have_text("0")
                    await expect(live.get_by_test_id("room-last-event").locator("time")).to_have_count(1)
                    done = page.locator(f'[data-testid=room-row][data-room-id="{finished_id}"]')
                    await expect(done).to_have_attribute("data-status", "finished")

                    # The finished game: its replay from the first step to the last.
                    await done.get_by_test_id("open-room").click()
                    detail = page.get_by_test_id("room-detail")
                    await expect(detail).to_have_attribute("data-room-id", finished_id)
                    await expect(detail.get_by_test_id("detail-player")).to_have_count(5)
                    position = page.get_by_test_id("replay-position")
                    await expect(position).to_have_text(re.compile(r"^step 1 of \d+$"))
                    text = await position.text_content()
                    assert text is not None
                    total = int(text.rsplit(" ", 1)[1])
                    step = page.get_by_test_id("replay-step")
                    await expect(step).to_have_attribute("data-type", "game.started")
                    await expect(page.get_by_test_id("replay-prev")).to_be_disabled()
                    for k in range(2, total + 1):
                        await page.get_by_test_id("replay-next").click()
                        await expect(position).to_have_text(f"step {k} of {total}")
                    await expect(page.get_by_test_id("replay-next")).to_be_disabled()
                    await expect(step).to_have_attribute("data-type", "game.finished")
                    await expect(step).to_have_attribute("data-status", "finished")
                    await expect(step).to_have_attribute("data-winner", final["room"]["winner"])
                    await expect(page.get_by_test_id("replay-winner")).to_contain_text(
                        final["room"]["winner"]
                    )
                    shown = await page.get_by_test_id("replay-player").evaluate_all(
                        "ps => ps.map(p => [p.dataset.playerId, p.dataset.role, p.dataset.alive])"
                    )
                    assert shown == [[p["id"], p["role"], str(p["alive"]).lower()] for p in final["players"]]
                    # Back and forth: the first step again, no role dealt yet.
                    await page.get_by_test_id("replay-first").click()
                    await expect(position).to_have_text(f"step 1 of {total}")
                    roles = await page.get_by_test_id("replay-player").evaluate_all(
                        "ps => ps.map(p => p.dataset.role)"
                    )
                    assert roles == [""] * 5
                    await page.get_by_test_id("replay-last").click()
                    await expect(position).to_have_text(f"step {total} of {total}")

                    # The log: hidden events carry the badge, public ones do not.
                    role_dealt = page.locator("[data-testid=event][data-type='role.assigned']").first
                    await expect(role_dealt).to_have_attribute("data-hidden", "true")
                    await expect(role_dealt.get_by_test_id("hidden-badge")).to_have_text("hidden")
                    phase = page.locator("[data-testid=event][data-type='phase.started']").first
                    await expect(phase).to_have_attribute("data-hidden", "false")
                    await expect(phase.get_by_test_id("hidden-badge")).to_have_count(0)
                    hidden = await page.locator("[data-testid=event][data-hidden=true]").count()
                    badges = await page.get_by_test_id("hidden-badge").count()
                    assert hidden == badges > 0

                    # Close the running room, from the listing.
                    await page.get_by_test_id("back").click()
                    await live.get_by_test_id("open-room").click()
                    await expect(detail).to_have_attribute("data-room-id", live_id)
                    await expect(detail).to_have_attribute("data-status", "in_progress")
                    roles_shown = await detail.get_by_test_id("detail-player").evaluate_all(
                        "ps => ps.map(p => p.dataset.role)"
                    )
                    assert all(roles_shown), roles_shown
                    refreshed = await page.get_by_test_id("refreshed").text_content()
                    await page.get_by_test_id("close-room").click()
                    # The confirmation waits through the page's next refresh.
                    await expect(page.get_by_test_id("refreshed")).not_to_have_text(refreshed or "")
                    await expect(page.get_by_test_id("close-room")).to_be_hidden()
                    await page.get_by_test_id("close-room-confirm").click()
                    await expect(detail).to_have_attribute("data-status", "closed")
                    closed = page.locator("[data-testid=event][data-type='room.closed']")
                    await expect(closed).to_have_count(1)
                    await expect(closed).to_contain_text('"reason":"operator"')
                    await expect(page.get_by_test_id("close-room")).to_be_hidden()
                    ARTIFACTS.mkdir(exist_ok=True)
                    await page.screenshot(path=ARTIFACTS / "admin-closed.png", full_page=True)
                finally:
                    await browser.close()

            vote = {"type": "vote", "target_player_id": None}
            refused = await http.post(f"/v1/rooms/{live_id}/actions", headers=live_seats[1].auth, json=vote)
            assert refused.status_code == 409
            assert refused.json()["code"] == "room_closed"
    assert errors == [], errors
    assert "Traceback" not in log.read_text(), log.read_text()
