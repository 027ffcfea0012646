"""The web page end to end, missions: two browsers and three bots play to the final reveal.

Page A picks the missions ruleset, creates the room and hosts; page B joins by code; three
bots join over HTTP (the Python SDK) and play from their options alone. A starts by clicking;
each page plays only what its options offer (leading: pick the team and propose it; approve
or reject; on a mission: success, or fail where offered). B reloads right after its first
sealed approval and comes back to the same seat, role, board and history, still knowing its
own vote. Everything waits on the DOM or the stream, never on sleeps: `[data-testid=game]`
carries the room's status, round, phase, attempt, the option types offered and whether this
page has acted in the open phase.

At the end both pages show the same winner and every role; the board's mission results agree
with `/rounds`, every `approval.closed` line names every player's vote, and every
`mission.closed` line only a count of fails.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from roundtable.contract import api, events
from roundtable.session import RoomSession
from roundtable_client.errors import APIStatusError

from tests.e2e.test_web_game import ARTIFACTS, CHROMIUM, log_seqs, open_page, require_chromium
from tests.support import serve

# Each phase closes once everyone due has acted; the deadline is only a slow machine's fallback.
PHASE_SECONDS = 30
STEP_MS = 60_000
GAME_MS = 480_000
PLAYERS = 5
BOTS = 3

# What the page should do next: "finished", a "round:phase:attempt" it has options in and has
# not played yet, or null (wait).
NEXT_STEP = """(done) => {
  const room = document.querySelector('[data-testid=room]');
  const game = document.querySelector('[data-testid=game]');
  if (!room || room.hidden || !game) return null;
  const d = game.dataset;
  if (d.status === 'finished') return 'finished';
  if (d.status !== 'in_progress' || !d.phase || !d.options) return null;
  const key = d.round + ':' + d.phase + ':' + d.attempt;
  return done.includes(key) ? null : key;
}"""

# The page knows its own action in that phase (a sealed vote is never streamed back), or the phase is over.
ACTED_OR_OVER = """(key) => {
  const d = document.querySelector('[data-testid=game]').dataset;
  const open = d.round + ':' + d.phase + ':' + d.attempt;
  return d.status !== 'in_progress' || open !== key || d.voted === 'true';
}"""


@dataclass
class Played:
    """What one page did in the game."""

    name: str
    slug: str
    phases: list[str] = field(default_factory=list)
    proposals: int = 0
    shots: list[Path] = field(default_factory=list)
    approvals: int = 0
    missions: int = 0
    reloaded: bool = False


async def create_missions_room(page: Page, url: str, nickname: str) -> str:
    await page.goto(url)
    await page.get_by_test_id("create-name").fill("E2E missions")
    await page.get_by_test_id("create-nickname").fill(nickname)
    await page.get_by_test_id("create-ruleset").select_option("missions")
    await page.get_by_test_id("create-phase-seconds").fill(str(PHASE_SECONDS))
    await page.get_by_test_id("create-submit").click()
    code = page.get_by_test_id("room-code")
    await expect(code).to_have_text(re.compile(r"^[A-HJ-NP-Z2-9]{6}$"))
    await expect(page.get_by_test_id("room-ruleset")).to_have_text("missions")
    text = await code.text_content()
    assert text is not None
    return text


async def join_room(page: Page, url: str, code: str, nickname: str) -> None:
    await page.goto(url)
    await page.get_by_test_id("join-code").fill(code)
    await page.get_by_test_id("join-nickname").fill(nickname)
    await page.get_by_test_id("join-submit").click()
    await expect(page.get_by_test_id("room-code")).to_have_text(code)
    await expect(page.get_by_test_id("waiting")).to_be_visible()


async def bot(session: RoomSession, seed: int) -> api.Team:
    """Play from options alone until the game ends; return the winner."""
    rng = random.Random(seed)
    options: list[api.Option] = []
    round_, phase, attempt = 0, api.Phase.propose, 1
    async for item in session.events():
        if isinstance(item, events.Snapshot):
            state = item.data
            if state.room.winner is not None:
                return state.room.winner
            options = state.options
            round_, phase = state.room.round, state.room.phase or api.Phase.propose
            attempt = state.board.attempt if state.board else 1
        elif isinstance(item, events.PhaseStartedEvent):
            round_, phase = item.data.round, item.data.phase
            attempt = item.data.attempt if isinstance(item.data.attempt, int) else attempt
            options = []  # the closed phase's options are void; options.changed follows
            continue
        elif isinstance(item, events.OptionsChangedEvent):
            options = item.data.options
        elif isinstance(item, events.GameFinishedEvent):
            return item.data.winner
        else:
            continue
        for option in options:
            body: api.ProposeTeamAction | api.ApproveTeamAction | api.MissionChoiceAction
            if option.type is api.ActionType.propose:
                team = rng.sample(option.targets, option.pick)
                body = api.ProposeTeamAction(
                    type="propose", player_ids=team, round=round_, phase=phase, attempt=attempt
                )
            elif option.type is api.ActionType.approve:
                choice = api.ApprovalChoice.approve if rng.random() < 0.8 else api.ApprovalChoice.reject
                body = api.ApproveTeamAction(
                    type="approve", choice=choice, round=round_, phase=phase, attempt=attempt
                )
            elif option.type is api.ActionType.mission:
                chosen = api.MissionChoice(rng.choice(option.choices))
                body = api.MissionChoiceAction(type="mission", choice=chosen, round=round_, phase=phase)
            else:
                raise AssertionError(f"a missions game offered {option.type}")
            try:
                await session.client.game.perform_action(
                    room_id=session.room_id, body=body, idempotency_key=uuid.uuid4().hex
                )
            except APIStatusError as refused:
                if refused.status_code != 409:  # the phase closed under the action: on to the next
                    raise
    raise AssertionError("the event stream ended")


async def reload_and_check(page: Page, key: str) -> None:
    """Reload mid-game: the same seat, role, board and history; its sealed vote still its own."""
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
    await expect(page.get_by_test_id("mission-track")).to_have_count(5)
    after = await log_seqs(page)
    assert after[: len(before)] == before, (before, after)
    # Read in one go: still in that approval, the page shows the vote it sent; or it is over.
    assert await page.evaluate(ACTED_OR_OVER, key), await game.evaluate("el => ({...el.dataset})")


async def play(page: Page, played: Played, *, seed: int, reload: bool = False) -> None:
    """Play every option the page offers, until the final reveal; reload after the first approval."""
    rng = random.Random(seed)
    deadline = time.monotonic() + GAME_MS / 1000
    while True:
        left_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
        step = await page.wait_for_function(NEXT_STEP, arg=played.phases, polling=100, timeout=left_ms)
        key = await step.json_value()
        if key == "finished":
            return
        played.phases.append(key)
        round_, phase, attempt = key.split(":")
        scope = page.locator(
            f'[data-testid=game][data-round="{round_}"][data-phase="{phase}"][data-attempt="{attempt}"]'
        )
        if not any(shot.stem.endswith(phase) for shot in played.shots):
            # The first time this page plays each phase, for the record (test-artifacts/).
            ARTIFACTS.mkdir(exist_ok=True)
            played.shots.append(ARTIFACTS / f"web-missions-{played.slug}-{phase}.png")
            await page.screenshot(path=played.shots[-1], full_page=True)
        try:
            if phase == "propose":
                option = scope.locator("[data-testid=option][data-type=propose]")
                pick = int(await option.get_attribute("data-pick", timeout=10_000) or 0)
                targets = scope.get_by_test_id("propose-target")
                for i in sorted(rng.sample(range(await targets.count()), pick)):
                    await targets.nth(i).click(timeout=10_000)
                await scope.get_by_test_id("propose-submit").click(timeout=10_000)
                played.proposals += 1
            elif phase == "approve":
                choice = "approve" if rng.random() < 0.8 else "reject"
                button = scope.locator(f"[data-testid=approve-choice][data-choice={choice}]")
                await button.click(timeout=10_000)
                played.approvals += 1
            elif phase == "mission":
                choices = scope.get_by_test_id("mission-choice")
                await choices.nth(rng.randrange(await choices.count())).click(timeout=10_000)
                played.missions += 1
        except PlaywrightTimeout:
            continue  # the phase closed under the click (its deadline): on to the next
        await page.wait_for_function(ACTED_OR_OVER, arg=key, polling=100)
        if reload and phase == "approve" and not played.reloaded:
            await reload_and_check(page, key)
            played.reloaded = True


async def final_reveal(page: Page) -> tuple[str, dict[str, str]]:
    """The winner and every player's role, as the page reveals them."""
    reveal = page.get_by_test_id("final-reveal")
    await expect(reveal).to_be_visible()
    rows = reveal.get_by_test_id("reveal-player")
    await expect(rows).to_have_count(PLAYERS)
    winner = await page.get_by_test_id("winner").get_attribute("data-winner")
    roles = await rows.evaluate_all("rs => rs.map(r => [r.dataset.playerId, r.dataset.role])")
    assert winner in ("crew", "spies")
    return winner, dict(roles)


async def shown_missions(page: Page) -> list[tuple[int, int, bool]]:
    """The board's mission results: (round, fails, succeeded)."""
    rows = await page.get_by_test_id("mission-result").evaluate_all(
        "rs => rs.map(r => [+r.dataset.round, +r.dataset.fails, r.dataset.succeeded === 'true'])"
    )
    return [(int(r), int(f), bool(s)) for r, f, s in rows]


async def test_two_pages_and_three_bots_play_missions_to_the_final_reveal(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    expect.set_options(timeout=STEP_MS)
    began = time.monotonic()
    log = tmp_path / "server.log"
    errors: list[str] = []
    with serve(database_url, log) as server:
        async with async_playwright() as pw:
            browser: Browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            sessions: list[RoomSession] = []
            try:
                a = await open_page(browser, errors)
                b = await open_page(browser, errors)
                code = await create_missions_room(a, server.url, "Alice")
                await join_room(b, server.url, code, "Bob")
                for i in range(BOTS):
                    sessions.append(await RoomSession.join(server.url, nickname=f"bot-{i + 1}", code=code))
                bots = [asyncio.create_task(bot(s, seed=10 + i)) for i, s in enumerate(sessions)]
                try:
                    for page in (a, b):
                        await expect(page.get_by_test_id("player")).to_have_count(PLAYERS)
                    await a.get_by_test_id("start-button").click()
                    # The board appears with the team sizes of five missions for five players.
                    await expect(b.get_by_test_id("mission-track")).to_have_count(5)
                    sizes = await b.get_by_test_id("mission-track").evaluate_all(
                        "ts => ts.map(t => Number(t.dataset.size))"
                    )
                    assert sizes == [2, 3, 2, 3, 3], sizes

                    host, guest = Played("A (host)", "host"), Played("B", "guest")
                    await asyncio.gather(play(a, host, seed=1), play(b, guest, seed=2, reload=True))
                    winners = await asyncio.wait_for(asyncio.gather(*bots), 60)
                finally:
                    for task in bots:
                        task.cancel()
                    await asyncio.gather(*bots, return_exceptions=True)

                winner_a, roles_a = await final_reveal(a)
                winner_b, roles_b = await final_reveal(b)
                results_a, results_b = await shown_missions(a), await shown_missions(b)
                rounds = await sessions[0].rounds()
                nicknames = [
                    n or ""
                    for n in await a.get_by_test_id("player").evaluate_all(
                        "ps => ps.map(p => p.dataset.nickname)"
                    )
                ]
                approvals = await b.locator("[data-testid=log-entry][data-kind=approval]").all_text_contents()
                missions = await b.locator("[data-testid=log-entry][data-kind=mission]").all_text_contents()
                seqs = await log_seqs(b)
                ARTIFACTS.mkdir(exist_ok=True)
                shots = [ARTIFACTS / "web-missions-host.png", ARTIFACTS / "web-missions-guest.png"]
                await a.screenshot(path=shots[0], full_page=True)
                await b.screenshot(path=shots[1], full_page=True)
            finally:
                await browser.close()
                for s in sessions:
                    await s.aclose()

    print(
        f"\nscreenshots of the final reveal: {shots[0]} {shots[1]}; while playing: {host.shots + guest.shots}"
    )
    print(f"game: {host} / {guest}; winner {winner_a}; {time.monotonic() - began:.1f}s in all")
    assert errors == [], errors
    assert set(winners) == {winner_a}
    assert winner_a == winner_b
    assert roles_a == roles_b
    assert sorted(roles_a.values()) == ["crew", "crew", "crew", "spy", "spy"]  # two spies for five
    # The board's results are the server's: the count of fails per mission, never who.
    server_results = [
        (r.round, p.mission.fails, p.mission.succeeded)
        for r in rounds.rounds
        for p in r.phases
        if p.mission is not None
    ]
    assert results_a == results_b == server_results, (results_a, results_b, server_results)
    successes = sum(1 for _, _, ok in server_results if ok)
    if winner_a == "crew":
        assert successes == 3
    assert len(missions) == len(server_results)
    for line, (round_, fails, ok) in zip(missions, server_results, strict=True):
        assert f"Mission {round_} {'succeeded' if ok else 'failed'}: {fails} fail" in line, line
    # Every closed approval showed every player's vote at once.
    assert approvals, "at least one approval closed"
    for line in approvals:
        for name in nicknames:
            assert re.search(rf"{re.escape(name)} (approve|reject)s", line), (name, line)
    # B's history survived the reload whole: every line once, in seq order, to the end.
    assert seqs == sorted(set(seqs)), seqs
    assert guest.reloaded
    assert host.approvals + guest.approvals >= 2
    assert "Traceback" not in log.read_text(), log.read_text()
