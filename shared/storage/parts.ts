/**
 * Cuts a byte stream into parts of exactly `size` bytes (the last one shorter): what S3's and
 * R2's multipart uploads want (every part but the last at least 5 MiB). One part is in memory
 * at a time, whatever the stream's length.
 */
export async function* partsOf(stream: ReadableStream<Uint8Array>, size: number): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  const reader = stream.getReader();
  let part = new Uint8Array(size);
  let filled = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let offset = 0;
      while (offset < value.byteLength) {
        const n = Math.min(size - filled, value.byteLength - offset);
        part.set(value.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === size) {
          yield part;
          part = new Uint8Array(size);
          filled = 0;
        }
      }
    }
    if (filled > 0) yield part.subarray(0, filled);
  } finally {
    reader.releaseLock();
  }
}

/** Parts with a flag on the last one, so a writer can choose a single PUT for a small object. */
export async function* partsWithLast(stream: ReadableStream<Uint8Array>, size: number): AsyncGenerator<{ bytes: Uint8Array<ArrayBuffer>; last: boolean }> {
  const parts = partsOf(stream, size);
  let current = await parts.next();
  if (current.done) {
    yield { bytes: new Uint8Array(0), last: true };
    return;
  }
  for (;;) {
    const next = await parts.next();
    yield { bytes: current.value, last: !!next.done };
    if (next.done) return;
    current = next;
  }
}

/** "a/b c/d" → "a/b%20c/d": each segment of a key encoded, the slashes kept. */
export const encodeKey = (key: string): string => key.split("/").map(encodeURIComponent).join("/");

/** The inverse of encodeKey; null when the text is not valid percent-encoding. */
export function decodeKey(path: string): string | null {
  try {
    return path.split("/").map(decodeURIComponent).join("/");
  } catch {
    return null;
  }
}

/** Joins a prefix ("exports/", "", "a/b") and a key with exactly one slash between them. */
export const joinKey = (prefix: string, key: string): string => (prefix ? `${prefix.replace(/\/+$/, "")}/${key.replace(/^\/+/, "")}` : key.replace(/^\/+/, ""));
