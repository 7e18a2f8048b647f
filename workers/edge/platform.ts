/**
 * The few Cloudflare Workers runtime types the entry uses, declared here rather than pulling in
 * @cloudflare/workers-types, whose globals clash with the DOM types the rest of the code uses.
 */
export interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}

export interface ScheduledController {
  readonly cron: string;
  readonly scheduledTime: number;
}

export interface QueueMessage<T> {
  readonly id: string;
  readonly body: T;
  ack(): void;
  retry(): void;
}

export interface MessageBatch<T> {
  readonly queue: string;
  readonly messages: readonly QueueMessage<T>[];
  ackAll(): void;
  retryAll(): void;
}

/** A Cloudflare Queue producer binding. */
export interface QueueProducer<T> {
  send(body: T): Promise<void>;
}

/** What the Worker sends itself after an enqueue: which lanes just got work. */
export interface WakeMessage {
  types: string[];
}
