// Acting from options: the one command path (`POST /v1/rooms/{room_id}/actions`) and the body an
// option implies. A client never restates a game's rules: it shows each option of the state (or of
// the latest `options.changed`) and sends what the option asks for; the server refuses the rest.
import type { ActionAccepted, ActionRequest, ActionType, Option, Phase } from "./generated/openapi.js";
import { unwrap, type RoundtableClient } from "./client.js";

/** The guard fields an action may carry: the server refuses it with `phase_closed` once that phase is over. */
export interface ActionGuard {
  round?: number;
  phase?: Phase;
  /** Sent only with the actions whose schema has it (see `ATTEMPT_GUARDED`). */
  attempt?: number;
}

/**
 * What the player picked for an option: exactly `pick` distinct players among its `targets`,
 * or to abstain (when it allows), or one of its `choices`.
 */
export type OptionAnswer =
  | { readonly targets: readonly string[] }
  | { readonly abstain: true }
  | { readonly choice: string };

// The action types whose request schema carries `attempt` (a phase that may open several times in a
// round). Checked against the generated ActionRequest below, so it cannot drift from the contract.
const GUARDED = ["propose", "approve"] as const;
export const ATTEMPT_GUARDED: ReadonlySet<ActionType> = new Set<ActionType>(GUARDED);

type AttemptTypes<T> = T extends { type: infer K } ? ("attempt" extends keyof T ? K : never) : never;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const guardedMatchesContract: Same<(typeof GUARDED)[number], AttemptTypes<ActionRequest>> = true;
void guardedMatchesContract;

/** Tell why `answer` does not fit `option`, or return null when it does. */
export function answerProblem(option: Option, answer: OptionAnswer): string | null {
  if ("choice" in answer) {
    return option.choices.includes(answer.choice)
      ? null
      : `\`${option.type}\` takes one of ${JSON.stringify(option.choices)}, not ${JSON.stringify(answer.choice)}`;
  }
  if ("abstain" in answer) return option.abstain ? null : `\`${option.type}\` does not allow abstaining`;
  const picked = answer.targets;
  if (option.pick < 1) return `\`${option.type}\` takes a choice, not players`;
  if (picked.length !== option.pick) return `\`${option.type}\` takes exactly ${option.pick} player(s), not ${picked.length}`;
  if (new Set(picked).size !== picked.length) return `\`${option.type}\` takes distinct players`;
  const outside = picked.find((id) => !option.targets.includes(id));
  return outside === undefined ? null : `\`${option.type}\` may not pick ${outside}`;
}

/**
 * Build the action that takes `option` with `answer`: `target_player_id` when it picks one player
 * (or `null` to abstain), `player_ids` when it picks more, `choice` for a choice; plus the guard.
 * Throws a RangeError when the answer does not fit the option (the server would refuse it).
 */
export function actionFor(option: Option, answer: OptionAnswer, guard: ActionGuard = {}): ActionRequest {
  const problem = answerProblem(option, answer);
  if (problem !== null) throw new RangeError(problem);
  const body: Record<string, unknown> = { type: option.type };
  if ("choice" in answer) body.choice = answer.choice;
  else if ("abstain" in answer) body.target_player_id = null;
  else if (option.pick === 1) body.target_player_id = answer.targets[0];
  else body.player_ids = [...answer.targets];
  if (guard.round !== undefined) body.round = guard.round;
  if (guard.phase !== undefined) body.phase = guard.phase;
  if (guard.attempt !== undefined && ATTEMPT_GUARDED.has(option.type)) body.attempt = guard.attempt;
  return body as unknown as ActionRequest;
}

/**
 * Take an action (`POST /v1/rooms/{room_id}/actions`, the operation `performAction`): the
 * `ActionAccepted` answer, or a `RoundtableError` carrying the problem. An `idempotencyKey`
 * makes a retry safe: the server answers it with the first answer.
 */
export async function performAction(
  client: RoundtableClient,
  roomId: string,
  action: ActionRequest,
  options: { idempotencyKey?: string } = {},
): Promise<ActionAccepted> {
  const header = options.idempotencyKey !== undefined ? { "Idempotency-Key": options.idempotencyKey } : undefined;
  return unwrap(
    await client.POST("/v1/rooms/{room_id}/actions", {
      params: { path: { room_id: roomId }, ...(header ? { header } : {}) },
      body: action,
    }),
  );
}
