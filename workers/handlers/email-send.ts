import { type EmailPayload, type SendEmailDeps, sendEmails } from "../../shared/email/send-email";
import type { Handler } from "../../shared/queue/handler";

/**
 * email.send: render, check suppressions, pick the provider, send, record (the source
 * document's steps), for up to 100 claimed jobs at once so campaign mail goes out through the
 * provider's batch endpoint (Resend: 100 a call) and every ledger write is one statement.
 */
export function emailSendHandler(deps: SendEmailDeps): Handler<EmailPayload> {
  return {
    type: "email.send",
    maxBatch: 100,
    runBatch: (jobs, ctx) => sendEmails(jobs, deps, ctx.signal),
  };
}
