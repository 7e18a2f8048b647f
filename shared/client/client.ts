/**
 * The typed client of the HTTP API, for the web app and any TypeScript caller: openapi-fetch
 * over the types generated from the served document (schema.gen.ts, `npm run gen:client`),
 * with a thin layer where it helps:
 * - retries of 429 and 503 answers, waiting as Retry-After says (bounded: a longer wait than
 *   `maxDelayMs` is not waited for, and the answer is returned as it is); a 503 is retried
 *   only where a second try cannot do the work twice (reads, deletes, and the enqueues below);
 * - idempotency keys on the POSTs the API deduplicates by them: an Idempotency-Key header on
 *   POST /v1/jobs unless the body or the caller has one, and an idempotency_key on each job of
 *   POST /v1/jobs/batch that has none (the batch route refuses the header), each a fresh UUID,
 *   so a retried enqueue never makes a second job. Other POSTs (create a list, start a
 *   campaign) take no key, and are retried only after a 429;
 * - async iterators over the cursor-paginated listings;
 * - the steps of the web app's flows that plain openapi-fetch gets wrong or makes long: a CSV
 *   upload sent as it is, an import or export waited for, a campaign followed to sent;
 * - problem+json answers as a typed ProblemError.
 * Web-standard APIs only (fetch, crypto.randomUUID, AbortSignal): it runs in browsers, Node,
 * Workers. The package exports it as "penguinmails-jobs/client".
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, operations, paths } from "./schema.gen";

export type { components, operations, paths };
export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type EnqueueRequest = Schemas["EnqueueRequest"];
export type Problem = Schemas["Problem"];
export type Campaign = Schemas["Campaign"];
export type Export = Schemas["Export"];
export type Import = operations["getImport"]["responses"][200]["content"]["application/json"];
export type ImportStarted = operations["startImport"]["responses"][202]["content"]["application/json"];

const FINISHED_JOB = new Set(["completed", "failed", "cancelled"]);
const FINISHED_CAMPAIGN = new Set(["sent", "cancelled"]);

/** A problem+json answer (RFC 9457) as an error: `status`, and the body as the document types it. */
export class ProblemError extends Error {
  override name = "ProblemError";
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${status} ${problem.title}: ${problem.detail}`);
  }

  /** The offending fields of a 422 ("payload.recipient"), empty otherwise. */
  get fields(): string[] {
    return (this.problem.errors ?? []).map((e) => e.path);
  }
}

export interface RetryOptions {
  /** Retries after the first try. Defaults to 3. */
  retries?: number;
  /** The longest single wait; a Retry-After beyond it is not waited for. Defaults to 30 s. */
  maxDelayMs?: number;
  /** Wait before the first retry when the answer has no Retry-After; doubles each time (with jitter). Defaults to 250 ms. */
  baseDelayMs?: number;
}

export interface JobsClientOptions {
  /** Where the API is, e.g. "https://jobs.example.com" (no trailing /v1). */
  baseUrl: string;
  /** A tenant or admin key: `pmk_…`. */
  apiKey?: string;
  /** Another fetch (a test's app.request, a proxy); defaults to the global one. */
  fetch?: (request: Request) => Promise<Response>;
  retry?: RetryOptions;
  /** Makes Idempotency-Key values; defaults to crypto.randomUUID. */
  idempotencyKey?: () => string;
}

/** Methods a second try cannot do twice (a 503 may come after the work was done). */
const SAFE_TO_REPEAT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** Retry-After in milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1_000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const pause = (ms: number, signal?: AbortSignal | null) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });

type JsonObject = Record<string, unknown>;
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Gives an enqueue its idempotency key where it has none; answers whether the request may be
 * sent twice. Bodies that are not the JSON the route takes go out untouched (the API answers them).
 */
async function withIdempotency(request: Request, newKey: () => string): Promise<{ request: Request; repeatable: boolean }> {
  if (request.method !== "POST") return { request, repeatable: SAFE_TO_REPEAT.has(request.method) };
  const route = new URL(request.url).pathname.replace(/\/+$/, "");
  if (route.endsWith("/v1/jobs")) {
    if (request.headers.has("idempotency-key")) return { request, repeatable: true };
    const body: unknown = await request.clone().json().catch(() => undefined);
    if (isObject(body) && body.idempotency_key !== undefined) return { request, repeatable: true };
    request.headers.set("idempotency-key", newKey());
    return { request, repeatable: true };
  }
  if (route.endsWith("/v1/jobs/batch")) {
    const body: unknown = await request.clone().json().catch(() => undefined);
    if (!isObject(body) || !Array.isArray(body.jobs)) return { request, repeatable: false };
    const jobs = body.jobs.map((j: unknown) => (isObject(j) && j.idempotency_key === undefined ? { ...j, idempotency_key: newKey() } : j));
    return { request: new Request(request, { body: JSON.stringify({ ...body, jobs }) }), repeatable: true };
  }
  return { request, repeatable: false };
}

/** A fetch that adds the API key and idempotency keys, and retries 429/503 as Retry-After says. */
function retryingFetch(options: JobsClientOptions): (request: Request) => Promise<Response> {
  const send = options.fetch ?? ((r: Request) => fetch(r));
  const retries = options.retry?.retries ?? 3;
  const maxDelayMs = options.retry?.maxDelayMs ?? 30_000;
  const baseDelayMs = options.retry?.baseDelayMs ?? 250;
  const newKey = options.idempotencyKey ?? (() => crypto.randomUUID());
  return async (given) => {
    if (options.apiKey && !given.headers.has("authorization")) given.headers.set("authorization", `Bearer ${options.apiKey}`);
    const { request, repeatable } = await withIdempotency(given, newKey);
    for (let attempt = 0; ; attempt++) {
      // A body can be read once: every try but the last sends a copy.
      const res = await send(attempt < retries ? request.clone() : request);
      const retried = res.status === 429 || (res.status === 503 && repeatable);
      if (!retried || attempt >= retries) return res;
      const asked = retryAfterMs(res.headers.get("retry-after"));
      if (asked !== undefined && asked > maxDelayMs) return res;
      const backoff = baseDelayMs * 2 ** attempt;
      const delay = Math.min(maxDelayMs, asked ?? backoff / 2 + Math.random() * (backoff / 2));
      await res.body?.cancel().catch(() => {});
      await pause(delay, request.signal);
    }
  };
}

/** Paths whose GET answers a page with `next_cursor` and takes `cursor`: the paginated listings. */
export type ListPath = {
  [P in keyof paths]: paths[P] extends {
    get: { parameters: { query?: { cursor?: string } }; responses: { 200: { content: { "application/json": { next_cursor: string | null } } } } };
  }
    ? P
    : never;
}[keyof paths];

type Page<P extends ListPath> = paths[P]["get"]["responses"][200]["content"]["application/json"];
/** The element type of a page's array (jobs, lists, campaigns, ...). */
export type ListItem<P extends ListPath> = {
  [K in keyof Page<P>]: K extends "next_cursor" ? never : Page<P>[K] extends readonly (infer E)[] ? E : never;
}[keyof Page<P>];
type ListQuery<P extends ListPath> = Omit<NonNullable<paths[P]["get"]["parameters"]["query"]>, "cursor">;
type PathParams<P extends ListPath> = paths[P]["get"]["parameters"] extends { path: infer A } ? A : never;
type ListInit<P extends ListPath> = { query?: ListQuery<P>; signal?: AbortSignal } & (PathParams<P> extends never ? { path?: never } : { path: PathParams<P> });

export interface JobsClient {
  /** The generated client itself: every operation, typed (`api.GET("/v1/lists/{id}", …)`). */
  api: Client<paths>;
  /** POST /v1/jobs: the job (201 new, 200 when its idempotency key matched); a ProblemError otherwise. */
  enqueue(body: EnqueueRequest, options?: { idempotencyKey?: string; signal?: AbortSignal }): Promise<Job>;
  /** GET /v1/jobs/:id. */
  get(id: string): Promise<Job>;
  /**
   * GET /v1/jobs/:id?wait=: the job once it has finished, or as it is after `seconds` (at most
   * 60 a request; longer waits take several requests). Check `state`.
   */
  wait(id: string, options?: { seconds?: number; signal?: AbortSignal }): Promise<Job>;
  /** Every item of a cursor-paginated listing, page after page, newest first. */
  list<P extends ListPath>(path: P, init?: ListInit<P>): AsyncIterableIterator<ListItem<P>>;
  /**
   * POST /v1/imports with the CSV itself as text/csv (sent as it is: openapi-fetch would
   * JSON-encode a string body, and the import would then fail on a header it cannot read).
   */
  importCsv(
    csv: string | Blob | ReadableStream<Uint8Array>,
    options: { mapping: Record<string, string>; listId?: string; hasHeader?: boolean; signal?: AbortSignal },
  ): Promise<ImportStarted>;
  /** The import once its job has finished (an import's id is its job's), or as it is after `seconds` (default 60). */
  waitForImport(id: string, options?: { seconds?: number; signal?: AbortSignal }): Promise<Import>;
  /**
   * A campaign as a progress bar follows it: yields it at once and at each change of its status,
   * counters or fan-out checkpoint, and ends after it is sent or cancelled. Reads every
   * `intervalMs` (default 500); stop early with `break` or the signal.
   */
  followCampaign(id: string, options?: { intervalMs?: number; signal?: AbortSignal }): AsyncIterableIterator<Campaign>;
  /**
   * An export's file, once its job has finished: the download's Response (its link is signed,
   * so no API key goes with it). Throws when the export failed or expired.
   */
  downloadExport(id: string, options?: { seconds?: number; signal?: AbortSignal }): Promise<Response>;
}

/** The answer's data, or its problem as a ProblemError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const body = result.error as Partial<Problem> | undefined;
    const problem: Problem =
      body && typeof body === "object" && typeof body.title === "string"
        ? (body as Problem)
        : { type: "about:blank", title: result.response.statusText || "Error", status: result.response.status, detail: String(body ?? "") };
    throw new ProblemError(result.response.status, problem);
  }
  return result.data as T;
}

export function createJobsClient(options: JobsClientOptions): JobsClient {
  const api = createClient<paths>({ baseUrl: options.baseUrl, fetch: retryingFetch(options) });
  const get = async (id: string, seconds?: number, signal?: AbortSignal) =>
    unwrap(await api.GET("/v1/jobs/{id}", { params: { path: { id }, query: seconds === undefined ? {} : { wait: seconds } }, signal }));
  // Plain functions, not methods through `this`: a destructured `const { wait } = client` works.
  const wait: JobsClient["wait"] = async (id, opts = {}) => {
    const deadline = Date.now() + (opts.seconds ?? 30) * 1_000;
    for (;;) {
      const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1_000));
      const job = await get(id, Math.min(60, left), opts.signal);
      if (FINISHED_JOB.has(job.state) || left <= 60) return job;
    }
  };
  return {
    api,
    async enqueue(body, opts = {}) {
      return unwrap(
        await api.POST("/v1/jobs", {
          body,
          params: { header: opts.idempotencyKey === undefined ? {} : { "Idempotency-Key": opts.idempotencyKey } },
          signal: opts.signal,
        }),
      );
    },
    get: (id) => get(id),
    wait,
    async importCsv(csv, opts) {
      return unwrap(
        await api.POST("/v1/imports", {
          params: {
            query: {
              mapping: JSON.stringify(opts.mapping),
              ...(opts.listId === undefined ? {} : { list_id: opts.listId }),
              ...(opts.hasHeader === undefined ? {} : { has_header: String(opts.hasHeader) }),
            },
          },
          body: csv as string,
          headers: { "content-type": "text/csv" },
          bodySerializer: (body: unknown) => body as BodyInit,
          // A stream body can be sent only half-duplex (fetch's rule); strings and Blobs ignore it.
          ...(csv instanceof ReadableStream ? { duplex: "half" } : {}),
          signal: opts.signal,
        }),
      );
    },
    async waitForImport(id, opts = {}) {
      await wait(id, { seconds: opts.seconds ?? 60, signal: opts.signal });
      return unwrap(await api.GET("/v1/imports/{id}", { params: { path: { id } }, signal: opts.signal }));
    },
    async *followCampaign(id, opts = {}) {
      let shown = "";
      for (;;) {
        const campaign = unwrap(await api.GET("/v1/campaigns/{id}", { params: { path: { id } }, signal: opts.signal }));
        const seen = JSON.stringify([campaign.status, campaign.counters, campaign.progress]);
        if (seen !== shown) {
          shown = seen;
          yield campaign;
        }
        if (FINISHED_CAMPAIGN.has(campaign.status)) return;
        await pause(opts.intervalMs ?? 500, opts.signal);
      }
    },
    async downloadExport(id, opts = {}) {
      const started = unwrap(await api.GET("/v1/exports/{id}", { params: { path: { id } }, signal: opts.signal }));
      let ready: Export = started;
      if (ready.status === "queued" || ready.status === "running") {
        // An export's id is its job's too.
        await wait(id, { seconds: opts.seconds ?? 60, signal: opts.signal });
        ready = unwrap(await api.GET("/v1/exports/{id}", { params: { path: { id } }, signal: opts.signal }));
      }
      if (ready.status !== "ready" || ready.download_url === null) {
        throw new Error(`export ${id} is ${ready.status}${ready.error ? `: ${ready.error}` : ""}`);
      }
      const send = options.fetch ?? ((r: Request) => fetch(r));
      const res = await send(new Request(ready.download_url, { signal: opts.signal }));
      if (!res.ok) throw new Error(`download of export ${id}: HTTP ${res.status}`);
      return res;
    },
    async *list(path, init) {
      let cursor: string | undefined;
      const GET = api.GET as unknown as (p: string, i: object) => Promise<{ data?: Record<string, unknown>; error?: unknown; response: Response }>;
      do {
        const page = unwrap(
          await GET(path, { params: { path: init?.path, query: { ...init?.query, ...(cursor === undefined ? {} : { cursor }) } }, signal: init?.signal }),
        )!;
        const items = Object.entries(page).find(([k, v]) => k !== "next_cursor" && Array.isArray(v))?.[1] as ListItem<typeof path>[] | undefined;
        yield* items ?? [];
        cursor = (page.next_cursor as string | null) ?? undefined;
      } while (cursor !== undefined);
    },
  };
}
