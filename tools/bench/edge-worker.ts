// The real Worker with a no-op email.send handler, for `npm run bench:edge`.
import { createEdgeWorker } from "../../workers/edge";
import { createHandlers } from "../../workers/handlers";

export default createEdgeWorker({
  handlers: (deps) => [...createHandlers(deps), { type: "email.send", run: async () => undefined }],
});
