/**
 * Operator commands, against the database the environment names (or the embedded one):
 *   npm run migrate
 *   npm run keys -- create --tenant acme [--name "acme backend"]
 *   npm run keys -- create --admin [--name ops]
 *   npm run keys -- list
 *   npm run keys -- revoke <key id>
 */
import { parseArgs } from "node:util";
import { ApiKeys } from "../shared/api/api-keys";
import { silentLogger } from "../shared/ports";
import { ConfigError, listenUrl, loadConfig, type NodeConfig } from "./node/config";
import { openDatabase } from "./node/database";
import { DirectoryInUseError } from "./node/process-lock";

const USAGE = `usage:
  npm run migrate
  npm run keys -- create --tenant <tenant id> [--name <label>]
  npm run keys -- create --admin [--name <label>]
  npm run keys -- list
  npm run keys -- revoke <key id>

Same environment as npm start (DATABASE_URL, API_KEY_PEPPER, DATA_DIR). On the embedded
default (PGlite) the database belongs to one process: while npm start runs, manage keys
through its API instead (POST /v1/keys, GET /v1/keys, DELETE /v1/keys/<key id>).`;

class UsageError extends Error {}
class InUseError extends Error {}

/** The embedded database is open in another process (npm start): say who, and what to do instead. */
function inUseMessage(err: DirectoryInUseError, config: NodeConfig, command: string): string {
  if (command === "migrate") {
    return `the embedded database is open in another process: ${err.message}.\nPGlite allows one process at a time; npm start applies pending migrations when it starts.`;
  }
  const api = listenUrl(config, config.PORT);
  const key = config.ADMIN_API_KEY ? "$ADMIN_API_KEY" : `$(cat ${config.DATA_DIR}/admin-key)`;
  return [
    `the embedded database is open in another process: ${err.message}.`,
    "PGlite allows one process at a time. Stop that process and run this again, or, while it runs,",
    `manage keys through its API with an admin key (if it listens on ${api}):`,
    `  curl -X POST ${api}/v1/keys -H "authorization: Bearer ${key}" -H 'content-type: application/json' \\`,
    `    -d '{"tenant_id":"acme","name":"web"}'          # or {"admin":true,"name":"ops"}; prints the key once`,
    `  curl ${api}/v1/keys -H "authorization: Bearer ${key}"                # list`,
    `  curl -X DELETE ${api}/v1/keys/<key id> -H "authorization: Bearer ${key}"  # revoke`,
  ].join("\n");
}

async function main(argv: string[]): Promise<void> {
  const [command, sub, ...rest] = argv;
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command !== "migrate" && command !== "keys") throw new UsageError(USAGE);
  const config = loadConfig(process.env);
  const db = await openDatabase(config, silentLogger).catch((err: unknown) => {
    throw err instanceof DirectoryInUseError ? new InUseError(inUseMessage(err, config, command)) : err;
  });
  try {
    if (command === "migrate") {
      process.stdout.write("schema is up to date\n");
      return;
    }
    const keys = new ApiKeys(db.sql, { pepper: db.pepper });
    if (sub === "create") {
      const { values } = parseArgs({
        args: rest,
        options: { tenant: { type: "string" }, admin: { type: "boolean" }, name: { type: "string" } },
      });
      if (!values.admin && !values.tenant) throw new UsageError(`keys create needs --tenant <id> or --admin\n${USAGE}`);
      if (values.admin && values.tenant) throw new UsageError("an admin key belongs to no tenant: give --admin or --tenant, not both");
      const created = await keys.create({
        tenantId: values.admin ? null : values.tenant!,
        admin: values.admin === true,
        name: values.name ?? (values.admin ? "admin" : `${values.tenant} key`),
      });
      process.stdout.write(
        `created key ${created.id} (${created.admin ? "admin" : `tenant ${created.tenantId}`})\n${created.key}\n` +
          "Store it now: only its hash is kept.\n",
      );
    } else if (sub === "list") {
      for (const k of await keys.list()) {
        const who = k.admin ? "admin" : `tenant ${k.tenantId}`;
        const state = k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : "active";
        process.stdout.write(`${k.id}\t${who}\t${state}\t${k.name}\n`);
      }
    } else if (sub === "revoke") {
      const id = rest[0];
      if (!id) throw new UsageError(`keys revoke needs a key id\n${USAGE}`);
      if (!(await keys.revoke(id))) throw new UsageError(`no active key ${id}`);
      process.stdout.write(`revoked ${id}\n`);
    } else {
      throw new UsageError(USAGE);
    }
  } finally {
    await db.close();
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const known = err instanceof UsageError || err instanceof ConfigError || err instanceof InUseError;
  process.stderr.write(`${known ? (err as Error).message : `failed: ${err instanceof Error ? err.message : String(err)}`}\n`);
  process.exit(err instanceof InUseError ? 1 : known ? 2 : 1);
});
