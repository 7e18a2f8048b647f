import { lookup } from "node:dns/promises";
import type { Resolver } from "../../shared/webhooks/ssrf";

/** The webhook SSRF guard's Resolver on Node: the system resolver (getaddrinfo), every address. */
export const nodeDnsResolver: Resolver = {
  async resolve(host) {
    const answers = await lookup(host, { all: true, verbatim: true });
    return answers.map((a) => a.address);
  },
};
