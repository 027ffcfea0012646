// The HTTP client: openapi-fetch over the paths generated from openapi/openapi.yaml.
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { paths, Problem } from "./generated/openapi.js";

/** An openapi-fetch client typed by the spec: `client.POST("/v1/rooms", { body })` and so on. */
export type RoundtableClient = Client<paths>;

/** Where a bearer token comes from: a fixed string, or a function asked before every request. */
export type TokenSource = string | null | undefined | (() => string | null | undefined);

export interface RoundtableClientOptions {
  /** The server, such as `http://127.0.0.1:8000` (or `""` for the page's own origin). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>` on every request when set. */
  token?: TokenSource;
  /** A fetch implementation (the global one by default). */
  fetch?: (input: Request) => Promise<Response>;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
}

function resolveToken(token: TokenSource): string | null | undefined {
  return typeof token === "function" ? token() : token;
}

/** Create a typed HTTP client; `token` (a string or a getter) becomes the bearer token of every request. */
export function createRoundtableClient(options: RoundtableClientOptions): RoundtableClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  });
  if (options.token !== undefined) {
    const source = options.token;
    const bearer: Middleware = {
      onRequest({ request }) {
        const token = resolveToken(source);
        if (token && !request.headers.has("Authorization")) {
          request.headers.set("Authorization", `Bearer ${token}`);
        }
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}

/** A problem+json answer (RFC 9457) as an exception: `status`, the stable `code`, and the whole `problem`. */
export class RoundtableError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Problem | undefined;

  constructor(status: number, problem: Problem | undefined, fallback = "request failed") {
    super(problem ? `${status} ${problem.code}: ${problem.detail ?? problem.title}` : `${status} ${fallback}`);
    this.name = "RoundtableError";
    this.status = status;
    this.code = problem?.code ?? "unknown";
    this.problem = problem;
  }
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}

/**
 * Return a call's `data`, or throw a `RoundtableError` carrying its problem:
 * `const session = unwrap(await client.POST("/v1/rooms", { body }))`.
 */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const problem = isProblem(result.error) ? result.error : undefined;
    throw new RoundtableError(result.response.status, problem, result.response.statusText);
  }
  return result.data as T;
}
