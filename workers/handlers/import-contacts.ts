import type { ImportDeps, ImportPayload } from "../../shared/imports/import-contacts";
import { runImport } from "../../shared/imports/import-contacts";
import type { Handler } from "../../shared/queue/handler";

/** import.contacts: streams a CSV from Storage into contacts (see shared/imports/import-contacts.ts). */
export function importContactsHandler(deps: ImportDeps): Handler<ImportPayload> {
  return {
    type: "import.contacts",
    run: (payload, job, ctx) => runImport(payload, job, ctx, deps),
  };
}
