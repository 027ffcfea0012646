"""The web page around the game: a browser watches a game others play, the host plays again,
and Quick play seats two browsers in one lobby.

Pages A (host) and B play with four bots (`roundtable-bots --room --rematch 1`, which play the
second game too); page W opens the room from the home page's list of open rooms with "Watch".
W never has an action or chat control and never shows a role before the game makes it public;
it sees the deaths. When the game is over, A clicks "Play again": every page (W's too) moves to
game 2 on the stream it has open, with no reload, each player showing the role dealt anew, and
game 2 is played to its end. The set-up is test_web_game.py's: Debian's Chromium, a real server.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from tests.e2e.test_web_game import (
    CHROMIUM,
    PLAYERS,
    STEP_MS,
    Played,
    create_room,
    join_room,
    open_page,
    play,
    require_chromium,
)
from tests.support import ROOT, serve

# Any role badge W shows on a living player while a game runs (a role is public only once its
# player is dead, or at the end): what a spectator must never see.
LEAKED_ROLES = """() => {
  const game = document.querySelector('[data-testid=game]');
  if (!game || game.dataset.status !== 'in_progress') return [];
  return [...document.querySelectorAll('[data-testid=player]')]
    .filter((p) => p.dataset.alive === 'true' && p.querySelector('[data-testid=player-role]'))
    .map((p) => p.dataset.nickname + ' in game ' + game.dataset.game);
}"""


async def watch_for_leaks(page: Page, leaks: list[str], stop: asyncio.Event) -> None:
    """Sample the spectator's page until `stop`: every role it shows on a living player."""
    while not stop.is_set():
        leaks.extend(await page.evaluate(LEAKED_ROLES))
        await asyncio.sleep(0.1)


async def assert_watching_only(page: Page) -> None:
    """The spectator's page: the badge, and no control that acts or chats."""
    await expect(page.get_by_test_id("spectating")).to_be_visible()
    await expect(page.get_by_test_id("game")).to_have_attribute("data-spectating", "true")
    await expect(page.get_by_test_id("chat-form")).to_be_hidden()
    await expect(page.get_by_test_id("action-panel")).to_be_hidden()
    await expect(page.get_by_test_id("me-panel")).to_be_hidden()
    for control in ("start-button", "advance-button", "vote-target", "play-again", "my-role"):
        await expect(page.get_by_test_id(control)).to_have_count(0)


async def test_a_spectator_watches_and_the_host_plays_again_without_a_reload(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    expect.set_options(timeout=STEP_MS)
    began = time.monotonic()
    log = tmp_path / "server.log"
    bots_out = tmp_path / "bots.log"
    errors: list[str] = []
    leaks: list[str] = []
    with serve(database_url, log) as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            try:
                a = await open_page(browser, errors)
                b = await open_page(browser, errors)
                w = await open_page(browser, errors)
                code = await create_room(a, server.url, "Alice")
                await join_room(b, server.url, code, "Bob")
                room_id = await a.evaluate("JSON.parse(localStorage.getItem('roundtable.session')).roomId")

                # W finds the lobby among the open rooms and watches it.
                await w.goto(server.url)
                listed = w.locator(f'[data-testid=open-room][data-room-id="{room_id}"]')
                await expect(listed).to_be_visible()
                await listed.get_by_test_id("watch-room").click()
                await expect(w.get_by_test_id("room-code")).to_have_text(code)
                await assert_watching_only(w)
                await expect(w.get_by_test_id("watching")).to_have_text(re.compile(r"^Watching [1-9]"))
                await expect(w.get_by_test_id("player")).to_have_count(2)  # a spectator is not a player
                for page in (a, b, w):  # no marker survives a reload
                    await page.evaluate("window.__sameDocument = true")

                # This checkout's SDK (--rematch is new), whatever the environment installed.
                env = {**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python")}
                with bots_out.open("wb") as out:
                    bots = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "roundtable.cli", "--url", server.url, "--room", code,
                        "--count", "4", "--seed", "17", "--rematch", "1",
                        cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    )  # fmt: skip
                stop = asyncio.Event()
                sampling = asyncio.create_task(watch_for_leaks(w, leaks, stop))
                try:
                    for page in (a, b, w):
                        await expect(page.get_by_test_id("player")).to_have_count(PLAYERS)
                    await a.get_by_test_id("start-button").click()
                    await expect(w.get_by_test_id("game")).to_have_attribute("data-status", "in_progress")
                    await assert_watching_only(w)

                    await asyncio.gather(
                        play(a, Played("A (host)"), host=True, seed=1),
                        play(b, Played("B"), host=False, seed=2),
                    )
                    # W saw the game to its end: a death on the way, then the reveal, and no "Play again".
                    await expect(w.get_by_test_id("game")).to_have_attribute("data-status", "finished")
                    await expect(w.locator("[data-testid=log-entry][data-kind=death]").first).to_be_visible()
                    await expect(w.get_by_test_id("final-reveal")).to_be_visible()
                    await expect(w.get_by_test_id("play-again")).to_have_count(0)
                    await expect(b.get_by_test_id("play-again")).to_have_count(0)
                    await expect(b.get_by_test_id("rematch-waiting")).to_be_visible()

                    await a.get_by_test_id("play-again").click()
                    for page in (a, b, w):
                        game = page.get_by_test_id("game")
                        await expect(game).to_have_attribute("data-game", "2")
                        await expect(game).to_have_attribute("data-status", "in_progress")
                        await expect(page.get_by_test_id("final-reveal")).to_be_hidden()
                        assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
                    # Everyone lives again, and W shows no role of game 1's.
                    await expect(w.locator("[data-testid=player][data-alive=true]")).to_have_count(PLAYERS)
                    await expect(w.get_by_test_id("player-role")).to_have_count(0)
                    await assert_watching_only(w)
                    # Each player's page shows the role game 2 dealt it.
                    dealt: dict[str, str] = {}
                    for page in (a, b):
                        mine = page.get_by_test_id("my-role")
                        await expect(mine).to_be_visible()
                        role = await mine.get_attribute("data-role")
                        me = await page.get_by_test_id("game").get_attribute("data-me-id")
                        assert role
                        assert me
                        dealt[me] = role

                    await asyncio.gather(
                        play(a, Played("A, game 2"), host=True, seed=3),
                        play(b, Played("B, game 2"), host=False, seed=4),
                    )
                    exit_code = await asyncio.wait_for(bots.wait(), 120)
                    await expect(w.get_by_test_id("final-reveal")).to_be_visible()
                finally:
                    stop.set()
                    await sampling
                    if bots.returncode is None:
                        bots.kill()
                        await bots.wait()

                rows = w.get_by_test_id("final-reveal").get_by_test_id("reveal-player")
                await expect(rows).to_have_count(PLAYERS)
                revealed = dict(
                    await rows.evaluate_all("rs => rs.map(r => [r.dataset.playerId, r.dataset.role])")
                )
                games = await w.locator("[data-testid=log-entry][data-kind=game]").all_text_contents()
            finally:
                await browser.close()

    bots_log = bots_out.read_text()
    print(f"\ntwo games watched in {time.monotonic() - began:.1f}s\n{bots_log}")
    assert errors == [], errors
    assert leaks == [], leaks
    assert exit_code == 0, bots_log
    assert len(re.findall(r"^winner: (town|mafia)$", bots_log, re.MULTILINE)) == 2, bots_log
    # The roles A and B were shown for game 2 are the ones its end revealed.
    assert {pid: revealed[pid] for pid in dealt} == dealt
    assert any(line.startswith("Game 2 started") for line in games), games
    assert "Traceback" not in log.read_text(), log.read_text()


async def test_quick_play_seats_two_browsers_in_one_lobby(database_url: str, tmp_path: Path) -> None:
    """Two pages click "Quick play" for missions: the first opens (or joins) a lobby, the
    second lands in it."""
    require_chromium()
    expect.set_options(timeout=STEP_MS)
    errors: list[str] = []
    with serve(database_url, tmp_path / "server.log") as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            try:
                codes = []
                for nickname in ("Quinn", "Rae"):
                    page = await open_page(browser, errors)
                    await page.goto(server.url)
                    await page.get_by_test_id("quick-ruleset").select_option("missions")
                    await page.get_by_test_id("quick-nickname").fill(nickname)
                    await page.get_by_test_id("quick-join").click()
                    code = page.get_by_test_id("room-code")
                    await expect(code).to_have_text(re.compile(r"^[A-HJ-NP-Z2-9]{6}$"))
                    await expect(page.get_by_test_id("room-ruleset")).to_have_text("missions")
                    codes.append(await code.text_content())
                await expect(page.locator('[data-testid=player][data-nickname="Quinn"]')).to_be_visible()
            finally:
                await browser.close()
    assert errors == [], errors
    assert codes[0] == codes[1]
