import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Storage, StorageNotFound } from "../../shared/storage/storage";

/**
 * The embedded default's store: a local folder, objects named by file:// URLs. Only files inside
 * the folder can be read or deleted, whatever URL a job names.
 */
export function createLocalStorage(folder: string): Storage {
  const root = resolve(folder);
  const inside = (url: string): string => {
    const path = resolve(fileURLToPath(url));
    const rel = relative(root, path);
    if (rel === "" || rel.startsWith("..") || rel.startsWith(sep) || resolve(root, rel) !== path) {
      throw new StorageNotFound(`${url} is outside the storage folder`);
    }
    return path;
  };
  return {
    schemes: ["file"],
    async read(url, signal) {
      const path = inside(url);
      try {
        await stat(path);
      } catch {
        throw new StorageNotFound(`no file ${url}`);
      }
      return Readable.toWeb(createReadStream(path, { signal })) as ReadableStream<Uint8Array>;
    },
    async write(key, body, options) {
      const path = resolve(root, key);
      if (relative(root, path).startsWith("..")) throw new Error(`key ${key} leaves the storage folder`);
      await mkdir(dirname(path), { recursive: true });
      let bytes = 0;
      const counter = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          bytes += chunk.byteLength;
          controller.enqueue(chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(body.pipeThrough(counter) as never), createWriteStream(path), { signal: options?.signal });
      } catch (err) {
        // A broken upload (over the limit, cut off, cancelled) leaves no half file behind.
        await rm(path, { force: true });
        throw err;
      }
      return { url: pathToFileURL(path).toString(), bytes };
    },
    async delete(url) {
      await rm(inside(url), { force: true });
    },
    keyOf(url) {
      try {
        return relative(root, inside(url)).split(sep).join("/");
      } catch {
        return null;
      }
    },
  };
}

/** Where a relative key ends up (tests). */
export const localPath = (folder: string, key: string): string => join(resolve(folder), key);
