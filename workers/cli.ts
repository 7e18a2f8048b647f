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
import { ConfigError, loadConfig } from "./node/config";
import { openDatabase } from "./node/database";

const USAGE = `usage:
  npm run migrate
  npm run keys -- create --tenant <tenant id> [--name <label>]
  npm run keys -- create --admin [--name <label>]
  npm run keys -- list
  npm run keys -- revoke <key id>`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, sub, ...rest] = argv;
  if (command !== "migrate" && command !== "keys") throw new UsageError(USAGE);
  const config = loadConfig(process.env);
  const db = await openDatabase(config, silentLogger);
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
  const known = err instanceof UsageError || err instanceof ConfigError;
  process.stderr.write(`${known ? (err as Error).message : `failed: ${err instanceof Error ? err.message : String(err)}`}\n`);
  process.exit(known ? 2 : 1);
});
