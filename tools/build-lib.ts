/**
 * npm run build:lib: the package entries (package.json "exports") as JavaScript with type
 * declarations, into dist/lib. esbuild bundles each entry into one ESM file (dependencies stay
 * imports, resolved from the installing project's node_modules); tsc writes the declarations of
 * every module an entry reaches (tools/lib/tsconfig.json), and their relative imports are then
 * given the explicit `.js` paths that Node's own resolution (moduleResolution node16/nodenext)
 * requires, so the types load under any resolution mode, not just "bundler".
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { build } from "esbuild";

const root = resolve(import.meta.dirname, "..");
const out = join(root, "dist", "lib");

/** Package subpath -> source entry; each becomes dist/lib/<name>.js and <name>.d.ts. */
const ENTRIES: Record<string, string> = {
  index: "workers/node/library.ts",
  client: "shared/client/client.ts",
};

function dtsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? dtsFiles(path) : path.endsWith(".d.ts") ? [path] : [];
  });
}

/** "./queue" -> "./queue.js", "../handlers" -> "../handlers/index.js"; anything else as it is. */
function explicit(fromFile: string, spec: string): string {
  if (!spec.startsWith("./") && !spec.startsWith("../")) return spec;
  if (/\.(m?js|json)$/.test(spec)) return spec;
  const base = resolve(dirname(fromFile), spec);
  if (existsSync(`${base}.d.ts`)) return `${spec}.js`;
  if (existsSync(join(base, "index.d.ts"))) return `${spec}/index.js`;
  throw new Error(`${relative(root, fromFile)}: cannot resolve "${spec}" among the declarations`);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, src]) => [name, join(root, src)])),
  outdir: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node24",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});

execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tools", "lib", "tsconfig.json")], {
  stdio: "inherit",
});
const types = join(out, "types");
for (const file of dtsFiles(types)) {
  const text = readFileSync(file, "utf8");
  const fixed = text.replace(/(\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(["'])([^"']+)\2/g, (_, lead: string, q: string, spec: string) => `${lead}${q}${explicit(file, spec)}${q}`);
  if (fixed !== text) writeFileSync(file, fixed);
}
for (const [name, src] of Object.entries(ENTRIES)) {
  const target = `./types/${src.replace(/\.tsx?$/, ".js")}`;
  writeFileSync(join(out, `${name}.d.ts`), `export * from "${target}";\n`);
}
process.stdout.write(`built ${Object.keys(ENTRIES).map((n) => `dist/lib/${n}.js`).join(", ")} with declarations\n`);
