import { type FanoutDeps, processCampaign } from "../../shared/email/campaign-fanout";
import type { Handler } from "../../shared/queue/handler";

/** campaign.process: fans a campaign out into email.send jobs, in checkpointed batches. */
export function campaignProcessHandler(deps: FanoutDeps): Handler<{ campaign_id: string; tenant_id: string }> {
  return {
    type: "campaign.process",
    run: (payload, job, ctx) => processCampaign(payload, job, ctx, deps),
  };
}
