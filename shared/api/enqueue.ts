/**
 * Turns enqueue request bodies into queue inputs: envelope schema, tenant rules of the caller's
 * key, then the type's payload schema. Every item is checked before anything is stored, and
 * every issue is collected so one 422 names all the bad fields of all the bad jobs.
 */
import { SYSTEM_TENANT } from "../jobs/catalog";
import { ValidationError } from "../queue/errors";
import type { NewJob } from "../queue/ledger";
import { type EnqueueInput, enqueueRequestSchema, type Queue } from "../queue/queue";
import type { Principal } from "./api-keys";
import { ApiError, type FieldError, joinPath, zodFieldErrors } from "./problem";

type Path = (string | number)[];

/**
 * One request item as a validated row ready to store, or the field errors that stop it. Throws a 403 ApiError
 * when the key may not enqueue it at all (another tenant, an admin-only type).
 */
export function prepareEnqueue(
  queue: Queue,
  principal: Principal,
  body: unknown,
  at: Path,
  headerIdempotencyKey?: string,
): { row: NewJob; errors?: undefined } | { row?: undefined; errors: FieldError[] } {
  const parsed = enqueueRequestSchema.safeParse(body);
  if (!parsed.success) return { errors: zodFieldErrors(parsed.error, at) };
  const req = parsed.data;
  const fail = (field: string, message: string) => ({ errors: [{ path: joinPath([...at, field]), message }] });

  const def = queue.catalog.get(req.type);
  if (!def) return fail("type", `unknown job type; expected one of: ${[...queue.catalog.keys()].join(", ")}`);

  let tenantId: string;
  if (!principal.admin) {
    // Deliberately 403, not 422: the request is well-formed but this key may not make it.
    if (def.adminOnly) throw new ApiError(403, `${def.type} jobs can be enqueued only with an admin key`);
    if (req.tenant_id !== undefined && req.tenant_id !== principal.tenantId) {
      throw new ApiError(403, "tenant_id differs from the tenant of your API key");
    }
    tenantId = principal.tenantId!;
  } else if (def.adminOnly) {
    if (req.tenant_id !== undefined && req.tenant_id !== SYSTEM_TENANT) {
      return fail("tenant_id", `${def.type} jobs belong to the system tenant "${SYSTEM_TENANT}"; omit tenant_id`);
    }
    tenantId = SYSTEM_TENANT;
  } else {
    if (req.tenant_id === undefined) return fail("tenant_id", "required with an admin key: the tenant to enqueue for");
    tenantId = req.tenant_id;
  }

  if (headerIdempotencyKey !== undefined && req.idempotency_key !== undefined && headerIdempotencyKey !== req.idempotency_key) {
    return fail("idempotency_key", "differs from the Idempotency-Key header; send one or make them equal");
  }
  const input: EnqueueInput = {
    type: req.type,
    payload: req.payload,
    tenantId,
    priority: req.priority,
    runAt: req.run_at === undefined ? undefined : new Date(req.run_at),
    delayMs: req.delay_ms,
    idempotencyKey: req.idempotency_key ?? headerIdempotencyKey,
    maxAttempts: req.max_attempts,
  };
  try {
    const row = queue.validate(input, at);
    const refused = def.clientRules?.(row.payload) ?? [];
    if (refused.length > 0) return { errors: refused.map((i) => ({ path: joinPath([...at, "payload", ...i.path]), message: i.message })) };
    return { row };
  } catch (err) {
    if (err instanceof ValidationError) {
      return { errors: err.issues.map((i) => ({ path: joinPath(i.path), message: i.message })) };
    }
    throw err;
  }
}

/** Prepares every item or throws one 422 listing the issues of all of them. */
export function prepareEnqueueAll(
  queue: Queue,
  principal: Principal,
  items: readonly { body: unknown; at: Path; idempotencyKey?: string }[],
  detail: string,
): NewJob[] {
  const rows: NewJob[] = [];
  const errors: FieldError[] = [];
  for (const item of items) {
    const prepared = prepareEnqueue(queue, principal, item.body, item.at, item.idempotencyKey);
    if (prepared.errors) errors.push(...prepared.errors);
    else rows.push(prepared.row);
  }
  if (errors.length > 0) throw new ApiError(422, detail, errors);
  return rows;
}
