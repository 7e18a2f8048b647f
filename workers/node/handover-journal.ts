/**
 * The send ledger's handover journal on node-postgres: notes, in the same tick as the SMTP
 * terminator's write, that a message is with its relay (email_sends.handed_over_at, migration
 * 0016), so a retry after a crash records it sent instead of sending it again.
 *
 * The note must be on its way to Postgres before the process can die, so it cannot wait for a
 * pooled connection (an asynchronous checkout). It goes through one connection of its own in
 * node-postgres' pipeline mode, where `query()` writes the statement to the socket before it
 * returns, however many are in flight. A statement fully received by the server runs and commits
 * even if its sender is killed right after (the server reads what it was sent before it sees the
 * connection close). The window left between the dot's write and the note's write is a few
 * microseconds of synchronous code, where a kill can only cause a repeat under the same
 * Message-ID, never a loss: the note is written after the dot, not before.
 */
import pg from "pg";
import type { HandoverJournal } from "../../shared/email/send-email";
import type { Logger, SqlClient } from "../../shared/ports";

const MARK = `update email_sends set handed_over_at = now(), provider_message_id = coalesce(provider_message_id, $2)
  where id = $1 and status = 'sending'`;
const CLEAR = "update email_sends set handed_over_at = null where id = $1 and status = 'sending'";

/** How long to wait before opening the journal's connection again after it broke. */
const RECONNECT_MS = 500;

export interface NodeHandoverJournal extends HandoverJournal {
  close(): Promise<void>;
}

export function createHandoverJournal(
  connectionString: string,
  opts: { applicationName?: string; logger: Logger; fallback: SqlClient },
): NodeHandoverJournal {
  let client: pg.Client | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const open = () => {
    if (closed) return;
    const c = new pg.Client({ connectionString, application_name: opts.applicationName, pipeline: true, keepAlive: true });
    let gone = false;
    // 'error' when the connection fails idle, 'end' when it closes with statements in flight
    // (those reject on their own): either way a fresh connection replaces it, once.
    const broke = (err: Error) => {
      if (gone) return;
      gone = true;
      if (client === c) client = undefined;
      c.end().catch(() => {});
      if (closed) return;
      opts.logger.warn("handover journal connection lost; reconnecting", { err: err.message });
      timer = setTimeout(open, RECONNECT_MS);
      timer.unref();
    };
    c.on("error", broke);
    c.on("end", () => broke(new Error("the connection ended")));
    c.connect().then(
      () => void (closed ? c.end().catch(() => {}) : (client = c)),
      (err: Error) => broke(err),
    );
  };
  open();

  const write = (text: string, params: unknown[], fallback: boolean): Promise<void> => {
    const c = client;
    const sent: Promise<unknown> | undefined = c ? c.query(text, params) : fallback ? opts.fallback.query(text, params) : undefined;
    if (!sent) return Promise.resolve();
    return sent.then(
      () => {},
      (err: Error) => opts.logger.warn("handover journal write failed", { err: err.message }),
    );
  };

  return {
    // Without the journal's connection the note is skipped: a retry then sends again under the
    // same Message-ID (a possible repeat), where a note that might be wrong could lose the message.
    handedOver: (sendId, providerMessageId) => write(MARK, [sendId, providerMessageId], false),
    // Clearing may go through the pool: it is issued by a live sender, which then waits for it.
    notTaken: (sendId) => write(CLEAR, [sendId], true),
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}
