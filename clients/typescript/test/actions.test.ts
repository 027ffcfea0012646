// Building actions from options, and performAction's request: no server needed.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  type ActionRequest,
  type Option,
  ATTEMPT_GUARDED,
  RoundtableError,
  actionFor,
  answerProblem,
  createRoundtableClient,
  performAction,
} from "../src/index.js";

const vote: Option = { type: "vote", vote_action: "kill", targets: ["a", "b"], pick: 1, abstain: true, choices: [] };
const propose: Option = { type: "propose", vote_action: null, targets: ["a", "b", "c"], pick: 2, abstain: false, choices: [] };
const approve: Option = { type: "approve", vote_action: null, targets: [], pick: 0, abstain: false, choices: ["approve", "reject"] };
const mission: Option = { type: "mission", vote_action: null, targets: [], pick: 0, abstain: false, choices: ["success"] };

test("one pick sends target_player_id, abstaining null; more send player_ids; a choice sends choice", () => {
  assert.deepEqual(actionFor(vote, { targets: ["b"] }, { round: 2, phase: "night", attempt: 1 }), {
    type: "vote",
    target_player_id: "b",
    round: 2,
    phase: "night",
  });
  assert.deepEqual(actionFor(vote, { abstain: true }), { type: "vote", target_player_id: null });
  assert.deepEqual(actionFor(propose, { targets: ["c", "a"] }, { round: 1, phase: "propose", attempt: 3 }), {
    type: "propose",
    player_ids: ["c", "a"],
    round: 1,
    phase: "propose",
    attempt: 3,
  });
  assert.deepEqual(actionFor(approve, { choice: "reject" }, { attempt: 2 }), { type: "approve", choice: "reject", attempt: 2 });
  // `mission` has no attempt in its schema: the guard leaves it out.
  assert.deepEqual(actionFor(mission, { choice: "success" }, { round: 1, phase: "mission", attempt: 1 }), {
    type: "mission",
    choice: "success",
    round: 1,
    phase: "mission",
  });
  assert.deepEqual([...ATTEMPT_GUARDED].sort(), ["approve", "propose"]);
});

test("an answer the option does not allow is refused before it is sent", () => {
  assert.match(answerProblem(propose, { targets: ["a"] }) ?? "", /exactly 2/);
  assert.match(answerProblem(propose, { targets: ["a", "a"] }) ?? "", /distinct/);
  assert.match(answerProblem(propose, { targets: ["a", "z"] }) ?? "", /may not pick z/);
  assert.match(answerProblem(propose, { abstain: true }) ?? "", /abstain/);
  assert.match(answerProblem(mission, { choice: "fail" }) ?? "", /success/);
  assert.match(answerProblem(approve, { targets: ["a"] }) ?? "", /choice/);
  assert.equal(answerProblem(vote, { targets: ["a"] }), null);
  assert.throws(() => actionFor(mission, { choice: "fail" }), RangeError);
});

test("performAction posts the action with its Idempotency-Key and returns ActionAccepted, or throws the problem", async () => {
  const seen: Request[] = [];
  const answers = [
    new Response(JSON.stringify({ type: "approve", round: 2, phase: "approve", seq: 57, phase_closed: false }), {
      status: 201,
      headers: { "Content-Type": "application/json" },
    }),
    new Response(JSON.stringify({ type: "about:blank", title: "Conflict", status: 409, code: "phase_closed", detail: "over" }), {
      status: 409,
      headers: { "Content-Type": "application/problem+json" },
    }),
  ];
  const client = createRoundtableClient({
    baseUrl: "http://h",
    token: "tok",
    fetch: async (request) => {
      seen.push(request.clone());
      const answer = answers.shift();
      assert.ok(answer);
      return answer;
    },
  });
  const action: ActionRequest = { type: "approve", choice: "approve", round: 2, phase: "approve", attempt: 1 };
  const accepted = await performAction(client, "r 1", action, { idempotencyKey: "k-1" });
  assert.deepEqual(accepted, { type: "approve", round: 2, phase: "approve", seq: 57, phase_closed: false });
  const sent = seen[0]!;
  assert.equal(sent.method, "POST");
  assert.equal(sent.url, "http://h/v1/rooms/r%201/actions");
  assert.equal(sent.headers.get("Idempotency-Key"), "k-1");
  assert.equal(sent.headers.get("Authorization"), "Bearer tok");
  assert.deepEqual(await sent.json(), action);
  await assert.rejects(
    performAction(client, "r", action),
    (error: unknown) => error instanceof RoundtableError && error.code === "phase_closed" && error.status === 409,
  );
  assert.equal(seen[1]!.headers.get("Idempotency-Key"), null);
});
