/**
 * Who listens to which channel, shared by the pub/sub adapters (Postgres LISTEN on pg and
 * PGlite, Redis SUBSCRIBE). Each adapter multiplexes many subscribers onto one server-side
 * subscription per channel, so the server is only told when a channel's first handler comes
 * or its last one goes; this class keeps that count honest under failures and repeats.
 */

export type ChannelHandler<T> = (message: T) => void;

export interface ChannelHooks {
  /**
   * Makes the channel live on the server. A rejection drops the handler being added and
   * rejects add(), so a caller is never left subscribed to a channel that receives nothing.
   */
  activate(channel: string): Promise<void>;
  /** Ends the server-side subscription; called once the channel's last handler is gone. */
  deactivate(channel: string): Promise<void>;
  /** Receives what a handler threw: delivery runs inside a connection's event handler, with no caller. */
  onError(err: Error): void;
  /**
   * Activate for every handler added, not only a channel's first. For a connection that can be
   * down or still connecting: add() then resolves only once the channel is live right now.
   */
  activateEach?: boolean;
}

export class ChannelHandlers<T = string> {
  private readonly handlers = new Map<string, Set<ChannelHandler<T>>>();

  constructor(private readonly hooks: ChannelHooks) {}

  /** Resolves once the channel is active, to an unsubscribe that may safely be called twice. */
  async add(channel: string, onMessage: ChannelHandler<T>): Promise<() => Promise<void>> {
    // A wrapper per call, so subscribing the same function twice needs two unsubscribes.
    const handler: ChannelHandler<T> = (message) => onMessage(message);
    let set = this.handlers.get(channel);
    const first = !set;
    if (!set) this.handlers.set(channel, (set = new Set()));
    set.add(handler);
    if (first || this.hooks.activateEach) {
      try {
        await this.hooks.activate(channel);
      } catch (err) {
        // Not deactivated: the channel never became live for this handler.
        this.remove(channel, handler);
        throw err;
      }
    }
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      subscribed = false;
      if (this.remove(channel, handler)) await this.hooks.deactivate(channel);
    };
  }

  deliver(channel: string, message: T): void {
    // A copy: a handler may unsubscribe (or subscribe others) while being called.
    for (const handler of [...(this.handlers.get(channel) ?? [])]) {
      try {
        handler(message);
      } catch (err) {
        // One failing subscriber must not starve the others or break the connection delivering.
        try {
          this.hooks.onError(err instanceof Error ? err : new Error(String(err)));
        } catch {
          // An error reporter that throws has nowhere further to go.
        }
      }
    }
  }

  /** The channels that have handlers; live, so channels removed meanwhile are skipped. */
  channels(): IterableIterator<string> {
    return this.handlers.keys();
  }

  get size(): number {
    return this.handlers.size;
  }

  /** Forgets every handler without deactivating (the connection is closing); later unsubscribes do nothing. */
  clear(): void {
    this.handlers.clear();
  }

  /** True when it was the channel's last handler. */
  private remove(channel: string, handler: ChannelHandler<T>): boolean {
    const set = this.handlers.get(channel);
    if (!set?.delete(handler) || set.size > 0) return false;
    this.handlers.delete(channel);
    return true;
  }
}

/** Postgres truncates longer identifiers, which would silently listen on a different name. */
const MAX_PG_CHANNEL_BYTES = 63;

export function checkPgChannel(channel: string): void {
  const bytes = new TextEncoder().encode(channel).length;
  if (bytes === 0 || bytes > MAX_PG_CHANNEL_BYTES) {
    throw new Error(`invalid LISTEN channel ${JSON.stringify(channel)}: must be 1-${MAX_PG_CHANNEL_BYTES} bytes`);
  }
}

/** Quoted, so any channel name (mixed case, dashes, quotes) is taken literally. */
export function quotePgChannel(channel: string): string {
  return `"${channel.replace(/"/g, '""')}"`;
}
