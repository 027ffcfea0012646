"""The web page end to end: two browsers and four bots play a mafia game to the final reveal.

Page A creates a room and hosts; page B joins by code; four bots (`roundtable-bots --room`)
join too. A starts the game by clicking; both pages play by clicking the vote buttons the page
offers (a dead page watches), A ends each day with "End this phase now", and B reloads after
the first night and carries on from its saved seat. Everything waits on the DOM, never on
sleeps: each page's `[data-testid=game]` carries the room's status, round and phase.

Headless Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright never
downloads a browser. The final reveal is saved as a screenshot under test-artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.support import ROOT, serve

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
# Each phase closes as soon as everyone who may act has acted (the host ends the day); the
# deadline is only the fallback for a slow machine, so it is generous.
PHASE_SECONDS = 30
STEP_MS = 60_000
GAME_MS = 480_000
PLAYERS = 6

# What the page should do next: "finished", a "round:phase" it has not played yet, or null (wait).
NEXT_STEP = """(done) => {
  const room = document.querySelector('[data-testid=room]');
  const game = document.querySelector('[data-testid=game]');
  if (!room || room.hidden || !game) return null;
  const d = game.dataset;
  if (d.status === 'finished') return 'finished';
  if (d.status !== 'in_progress' || !d.phase) return null;
  const key = d.round + ':' + d.phase;
  return done.includes(key) ? null : key;
}"""

# The page's own vote is in (it saw its vote.cast), or that phase is over.
VOTED_OR_OVER = """(key) => {
  const d = document.querySelector('[data-testid=game]').dataset;
  return d.status !== 'in_progress' || d.round + ':' + d.phase !== key || d.voted === 'true';
}"""


@dataclass
class Played:
    """What one page did in the game."""

    name: str
    phases: list[str] = field(default_factory=list)
    votes: int = 0
    advances: int = 0
    reloaded: bool = False


def bots_command() -> list[str]:
    """`roundtable-bots` from this environment (what `uv run roundtable-bots` runs)."""
    script = Path(sys.executable).with_name("roundtable-bots")
    return [str(script)] if script.exists() else [sys.executable, "-m", "roundtable.cli"]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def open_page(browser: Browser, errors: list[str]) -> Page:
    """A page in its own context: its own localStorage, so its own seat."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(STEP_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


async def create_room(page: Page, url: str, nickname: str) -> str:
    await page.goto(url)
    await page.get_by_test_id("create-name").fill("E2E game night")
    await page.get_by_test_id("create-nickname").fill(nickname)
    await page.get_by_test_id("create-phase-seconds").fill(str(PHASE_SECONDS))
    await page.get_by_test_id("create-submit").click()
    code = page.get_by_test_id("room-code")
    await expect(code).to_have_text(re.compile(r"^[A-HJ-NP-Z2-9]{6}$"))
    text = await code.text_content()
    assert text is not None
    return text


async def join_room(page: Page, url: str, code: str, nickname: str) -> None:
    await page.goto(url)
    await page.get_by_test_id("join-code").fill(code.lower())  # the page upper-cases it
    await page.get_by_test_id("join-nickname").fill(nickname)
    await page.get_by_test_id("join-submit").click()
    await expect(page.get_by_test_id("room-code")).to_have_text(code)
    await expect(page.get_by_test_id("waiting")).to_be_visible()


async def log_seqs(page: Page) -> list[int]:
    seqs = await page.get_by_test_id("log-entry").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    return [int(s) for s in seqs]


async def reload_and_check(page: Page) -> None:
    """Reload mid-game: the page comes back to the same seat, role and history, and goes on live."""
    game = page.get_by_test_id("game")
    me, role = await game.get_attribute("data-me-id"), await game.get_attribute("data-role")
    before = await log_seqs(page)
    saved = await page.evaluate("JSON.parse(localStorage.getItem('roundtable.session'))")
    assert saved["roomId"], saved
    assert saved["token"], saved
    assert saved["lastSeq"] > 0, saved
    await page.reload()
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    await expect(game).to_have_attribute("data-me-id", me or "")
    await expect(game).to_have_attribute("data-role", role or "")
    await expect(page.get_by_test_id("my-role")).to_have_text(role or "")
    after = await log_seqs(page)
    assert after[: len(before)] == before, (before, after)


async def play(page: Page, played: Played, *, host: bool, seed: int, reload_after: str | None = None) -> None:
    """Play every phase by clicking, until the final reveal; reload once past `reload_after`."""
    rng = random.Random(seed)
    deadline = time.monotonic() + GAME_MS / 1000
    while True:
        left_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
        step = await page.wait_for_function(NEXT_STEP, arg=played.phases, polling=100, timeout=left_ms)
        key = await step.json_value()
        if key == "finished":
            return
        if reload_after and key != reload_after and not played.reloaded:
            await reload_and_check(page)
            played.reloaded = True
            continue  # the same phase again, now on the reloaded page
        played.phases.append(key)
        round_, phase = key.split(":")
        scope = page.locator(f'[data-testid=game][data-round="{round_}"][data-phase="{phase}"]')
        try:
            if phase == "day":
                if host:
                    await scope.get_by_test_id("advance-button").click(timeout=10_000)
                    played.advances += 1
                continue
            buttons = scope.get_by_test_id("vote-target")
            count = await buttons.count()
            if count == 0:
                continue  # dead, or no one to wake for at night
            await buttons.nth(rng.randrange(count)).click(timeout=10_000)
            played.votes += 1
        except PlaywrightTimeout:
            continue  # the phase closed under the click (its deadline): on to the next
        await page.wait_for_function(VOTED_OR_OVER, arg=key, polling=100)


async def final_reveal(page: Page) -> tuple[str, dict[str, str]]:
    """The winner and every player's role, as the page reveals them."""
    reveal = page.get_by_test_id("final-reveal")
    await expect(reveal).to_be_visible()
    rows = reveal.get_by_test_id("reveal-player")
    await expect(rows).to_have_count(PLAYERS)
    winner = await page.get_by_test_id("winner").get_attribute("data-winner")
    roles = await rows.evaluate_all("rs => rs.map(r => [r.dataset.playerId, r.dataset.role])")
    assert winner in ("town", "mafia")
    return winner, dict(roles)


async def test_two_pages_and_four_bots_play_a_game_to_the_final_reveal(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    expect.set_options(timeout=STEP_MS)
    began = time.monotonic()
    log = tmp_path / "server.log"
    bots_out = tmp_path / "bots.log"
    errors: list[str] = []
    with serve(database_url, log) as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            try:
                a = await open_page(browser, errors)
                b = await open_page(browser, errors)
                code = await create_room(a, server.url, "Alice")
                await expect(a.get_by_test_id("start-button")).to_be_disabled()
                await join_room(b, server.url, code, "Bob")

                # The lobby is live: B's arrival, presence and chat reach A.
                bob = a.locator('[data-testid=player][data-nickname="Bob"]')
                await expect(bob).to_have_attribute("data-connected", "true")
                await b.get_by_test_id("chat-input").fill("hi from Bob")
                await b.get_by_test_id("chat-send").click()
                said = a.locator("[data-testid=log-entry][data-kind=chat]", has_text="hi from Bob")
                await expect(said).to_have_attribute("data-channel", "room")

                with bots_out.open("wb") as out:
                    bots = await asyncio.create_subprocess_exec(
                        *bots_command(), "--url", server.url, "--room", code, "--count", "4", "--seed", "7",
                        cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    )  # fmt: skip
                try:
                    for page in (a, b):
                        await expect(page.get_by_test_id("player")).to_have_count(PLAYERS)
                    await a.get_by_test_id("start-button").click()

                    host, guest = Played("A (host)"), Played("B")
                    await asyncio.gather(
                        play(a, host, host=True, seed=1),
                        play(b, guest, host=False, seed=2, reload_after="1:night"),
                    )
                    exit_code = await asyncio.wait_for(bots.wait(), 120)
                finally:
                    if bots.returncode is None:
                        bots.kill()
                        await bots.wait()

                winner_a, roles_a = await final_reveal(a)
                winner_b, roles_b = await final_reveal(b)
                # B's history survived the reload whole: every line once, in seq order, to the end.
                seqs = await log_seqs(b)
                assert seqs == sorted(set(seqs)), seqs
                finish = b.locator("[data-testid=log-entry][data-kind=finish]")
                await expect(finish).to_have_count(1)
                ARTIFACTS.mkdir(exist_ok=True)
                shots = [ARTIFACTS / "web-final-host.png", ARTIFACTS / "web-final-guest.png"]
                await a.screenshot(path=shots[0], full_page=True)
                await b.screenshot(path=shots[1], full_page=True)
            finally:
                await browser.close()

    bots_log = bots_out.read_text()
    print(f"\nscreenshots of the final reveal: {shots[0]} {shots[1]}")
    print(f"game: {host} / {guest}; winner {winner_a}; {time.monotonic() - began:.1f}s in all")
    print(bots_log)
    assert errors == [], errors
    assert exit_code == 0, bots_log
    assert f"winner: {winner_a}" in bots_log
    assert winner_a == winner_b
    assert roles_a == roles_b
    assert sorted(roles_a.values()).count("mafia") == 1  # the default deal for six
    # Both pages played: the host ended a day, B reloaded after the first night, and the pages
    # voted (one of them at least is alive in round 1's vote: one death a night).
    assert guest.reloaded
    assert host.advances >= 1
    assert host.votes + guest.votes >= 1
    assert "Traceback" not in log.read_text(), log.read_text()
