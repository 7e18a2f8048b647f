-- Exports of a campaign's engagement events (issue 16): source 'campaign_engagement', whose
-- source_id is the campaign's id. exports_check_source (0013) checks every source other than
-- 'list' and 'segment' against campaigns, so the new one is checked as 'campaign' is.
alter table exports drop constraint exports_source_check;
alter table exports add constraint exports_source_check check (source in ('list', 'segment', 'campaign', 'campaign_engagement'));

-- The export's keyset pages: a campaign's hits by id. The report's index (tenant_id,
-- campaign_id, at) would make each page rescan and sort the campaign's hits.
create index email_engagement_campaign_id_idx on email_engagement (tenant_id, campaign_id, id);
