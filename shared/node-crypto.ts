/**
 * node:crypto where the runtime has it (Node), undefined on the edge. Looked up at run time
 * (process.getBuiltinModule, Node 20.16+) rather than imported, so the module stays loadable in
 * workerd, whose bundle has no node: built-ins; code that uses it keeps a WebCrypto path for
 * the edge that gives the same bytes.
 */
type NodeCrypto = typeof import("node:crypto");

const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown; release?: { name?: string } } }).process;

export const nodeCrypto: NodeCrypto | undefined =
  proc?.release?.name === "node" && typeof proc.getBuiltinModule === "function" ? (proc.getBuiltinModule("node:crypto") as NodeCrypto) : undefined;
