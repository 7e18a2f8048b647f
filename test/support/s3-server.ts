/**
 * An S3-compatible server for the storage tests: s3rver (a Node implementation of the S3 API,
 * keeping objects in a temp folder) behind a proxy that checks every request's SigV4 signature
 * with AWS's own signer (@smithy/signature-v4), since s3rver does not check v4 signatures.
 * A request signed with the wrong key, region or canonical form gets S3's 403 SignatureDoesNotMatch.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";
import S3rver from "s3rver";

// s3rver knows only the key id S3RVER; the secret is checked by the proxy alone.
export const S3_KEYS = { accessKeyId: "S3RVER", secretAccessKey: "pm-s3-secret-5f2c9a7e" };
export const S3_REGION = "auto";

export interface S3Server {
  endpoint: string;
  /** Requests whose signature checked out, and those refused. */
  stats: { verified: number; refused: number; methods: string[] };
  close(): Promise<void>;
}

async function verify(req: IncomingMessage): Promise<boolean> {
  const auth = req.headers.authorization ?? "";
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m || m[1] !== S3_KEYS.accessKeyId || m[3] !== S3_REGION) return false;
  const signed = m[4]!.split(";");
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const value = req.headers[name];
    if (value === undefined) return false;
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const amzDate = headers["x-amz-date"];
  if (!amzDate) return false;
  const url = new URL(req.url!, "http://x");
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = v;
  const signer = new SignatureV4({ credentials: S3_KEYS, region: S3_REGION, service: "s3", sha256: Hash.bind(null, "sha256"), uriEscapePath: false });
  const date = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  const out = await signer.sign(
    { method: req.method!, protocol: "http:", hostname: "x", path: req.url!.split("?")[0]!, query, headers, body: undefined },
    { signingDate: date },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(out.headers.authorization))?.[1];
  return expected === m[5];
}

export async function startS3Server(buckets: string[]): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), "pm-s3-"));
  const s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir, configureBuckets: buckets.map((name) => ({ name })) });
  const inner = (await s3.run()) as AddressInfo;
  const stats = { verified: 0, refused: 0, methods: [] as string[] };
  const proxy: Server = createServer((req, res) => {
    verify(req).then(
      (ok) => {
        if (!ok) {
          stats.refused++;
          req.resume();
          res.writeHead(403, { "content-type": "application/xml" });
          res.end("<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>signature check failed</Message></Error>");
          return;
        }
        stats.verified++;
        stats.methods.push(`${req.method} ${new URL(req.url!, "http://x").search || "-"}`.replace(/uploadId=[^&]+/, "uploadId=…").replace(/partNumber=\d+/, "partNumber=N"));
        const upstream = httpRequest(
          { host: "127.0.0.1", port: inner.port, method: req.method, path: req.url, headers: req.headers },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on("error", () => res.destroy());
        req.pipe(upstream);
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const { port } = proxy.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    async close() {
      await new Promise((r) => proxy.close(r));
      proxy.closeAllConnections();
      await s3.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
