-- Tenant boundaries held by the schema. Every row that refers to a tenant-owned row carries
-- tenant_id and refers to it by (tenant_id, id), so no statement can tie one tenant's row to
-- another's, whatever a job's payload names; the handlers' checks come first, this is the floor.
--
-- Before this, email_sends' idempotency key was unique across tenants and a campaign was
-- referenced by id alone: tenant A's email.send naming tenant B's campaign_id took B's ledger
-- slot for an address, B's counters moved for a send B never made, and B then skipped that
-- recipient. A database holding such cross-tenant rows fails this migration on purpose (the
-- constraint names the rows' table): those rows are the damage, to be looked at by a person.

-- Targets: (tenant_id, id) is unique wherever id already is, so composite keys can point at it.
alter table lists add constraint lists_tenant_id_key unique (tenant_id, id);
alter table contacts add constraint contacts_tenant_id_key unique (tenant_id, id);
alter table segments add constraint segments_tenant_id_key unique (tenant_id, id);
alter table templates add constraint templates_tenant_id_key unique (tenant_id, id);
alter table campaigns add constraint campaigns_tenant_id_key unique (tenant_id, id);
alter table webhook_endpoints add constraint webhook_endpoints_tenant_id_key unique (tenant_id, id);
alter table email_sends add constraint email_sends_tenant_id_key unique (tenant_id, id);

-- A segment filters one of its own tenant's lists.
alter table segments
  drop constraint segments_list_id_fkey,
  add constraint segments_list_fkey foreign key (tenant_id, list_id) references lists (tenant_id, id) on delete cascade;

-- A campaign sends its own tenant's template to its own tenant's list or segment.
alter table campaigns
  drop constraint campaigns_template_id_fkey,
  drop constraint campaigns_list_id_fkey,
  drop constraint campaigns_segment_id_fkey,
  add constraint campaigns_template_fkey foreign key (tenant_id, template_id) references templates (tenant_id, id),
  add constraint campaigns_list_fkey foreign key (tenant_id, list_id) references lists (tenant_id, id),
  add constraint campaigns_segment_fkey foreign key (tenant_id, segment_id) references segments (tenant_id, id);

-- The send ledger: a message key is unique within its tenant (two tenants' keys never meet),
-- and the campaign and contact a send names are the sending tenant's own.
create unique index email_sends_tenant_key_idx on email_sends (tenant_id, idempotency_key);
alter table email_sends
  drop constraint email_sends_idempotency_key_key,
  add constraint email_sends_campaign_fkey foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id),
  -- A contact may go; its sends stay in the ledger (they happened) without the link.
  add constraint email_sends_contact_fkey foreign key (tenant_id, contact_id) references contacts (tenant_id, id)
    on delete set null (contact_id);
-- For the contact foreign key's delete action, which would otherwise scan the ledger.
create index email_sends_contact_idx on email_sends (tenant_id, contact_id) where contact_id is not null;

alter table email_events
  add constraint email_events_campaign_fkey foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id),
  add constraint email_events_send_fkey foreign key (tenant_id, send_id) references email_sends (tenant_id, id);

alter table webhook_deliveries
  drop constraint webhook_deliveries_endpoint_id_fkey,
  add constraint webhook_deliveries_endpoint_fkey foreign key (tenant_id, endpoint_id)
    references webhook_endpoints (tenant_id, id) on delete cascade;

-- An import adds to one of its own tenant's lists; the import's row outlives a deleted list.
alter table imports
  add constraint imports_list_fkey foreign key (tenant_id, list_id) references lists (tenant_id, id)
    on delete set null (list_id);

-- An export's source is a list, a segment or a campaign by source_id: one column naming three
-- tables, which no foreign key can say. Checked on write instead, with the foreign keys' rule
-- (the row exists in the export's tenant, locked for key share until the transaction ends).
create function exports_check_source() returns trigger
language plpgsql set search_path from current as $$
begin
  case new.source
    when 'list' then perform from lists where tenant_id = new.tenant_id and id = new.source_id for key share;
    when 'segment' then perform from segments where tenant_id = new.tenant_id and id = new.source_id for key share;
    else perform from campaigns where tenant_id = new.tenant_id and id = new.source_id for key share;
  end case;
  if not found then
    raise foreign_key_violation using
      message = format('exports: %s %s is not a %s of tenant %s', new.source, new.source_id, new.source, new.tenant_id),
      table = 'exports';
  end if;
  return new;
end $$;

create trigger exports_source before insert or update of tenant_id, source, source_id on exports
  for each row execute function exports_check_source();

-- list_members has no tenant_id of its own (migration 0012 checks its references a statement at
-- a time, for the import's speed): a member's list and contact must belong to one tenant. The
-- list's tenant is read while locking the lists, and the contacts are then counted only within
-- it, so the common statement (one list) costs what 0012's check cost.
create or replace function list_members_check_refs() returns trigger
language plpgsql set search_path from current as $$
declare
  contact_ids bigint[];
  list_ids text[];
  list_tenants text[];
  locked bigint;
begin
  select array_agg(distinct contact_id), array_agg(distinct list_id) into contact_ids, list_ids from new_members;
  if contact_ids is null then
    return null;
  end if;
  -- A row deleted by a transaction that committed meanwhile is not locked, so not counted.
  select count(*), array_agg(distinct tenant_id) into locked, list_tenants
    from (select l.tenant_id from lists l where l.id = any(list_ids) for key share of l) s;
  if locked <> cardinality(list_ids) then
    raise foreign_key_violation using message = 'list_members.list_id names a list that does not exist', table = 'list_members';
  end if;
  if cardinality(list_tenants) = 1 then
    select count(*) into locked from (
      select from contacts c where c.id = any(contact_ids) and c.tenant_id = list_tenants[1] for key share of c
    ) s;
    if locked <> cardinality(contact_ids) then
      raise foreign_key_violation
        using message = 'list_members.contact_id names a contact that does not exist in the list''s tenant', table = 'list_members';
    end if;
  else
    -- Lists of several tenants in one statement: each member checked against its own list.
    perform from contacts c where c.id = any(contact_ids) for key share of c;
    if exists (
      select from new_members m
      left join lists l on l.id = m.list_id
      left join contacts c on c.id = m.contact_id and c.tenant_id = l.tenant_id
      where c.id is null
    ) then
      raise foreign_key_violation
        using message = 'list_members.contact_id names a contact that does not exist in the list''s tenant', table = 'list_members';
    end if;
  end if;
  return null;
end $$;
