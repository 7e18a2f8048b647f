-- list_members' references, checked once a statement instead of once a row.
--
-- As foreign keys, list_id and contact_id cost two lookups a member row, each run as its own
-- query (an executor set up and torn down every time): 41% of Postgres' CPU time in
-- import.contacts (perf, 300,000 rows, 5,000 a statement). Checked from each statement's
-- transition table, the same rules take 7% of it: the import's statement ran 45,000 rows a
-- CPU-second, against 32,000 with the foreign keys and 46,000 with no check at all.
-- (Numbered 0012: 0011 is taken on main.)
--
-- The rules are the foreign keys' (under read committed, as every transaction here runs):
--   * a member's list and contact exist when it is written, and are locked for key share until
--     its transaction ends, so a concurrent delete waits for it and then removes it too;
--   * deleting lists or contacts deletes their members (on delete cascade);
--   * a referenced lists.id or contacts.id does not change;
--   * contacts or lists cannot be truncated while list_members has rows.

alter table list_members
  drop constraint list_members_list_id_fkey,
  drop constraint list_members_contact_id_fkey;

create function list_members_check_refs() returns trigger
language plpgsql set search_path from current as $$
declare
  contact_ids bigint[];
  list_ids text[];
  locked bigint;
begin
  select array_agg(distinct contact_id), array_agg(distinct list_id) into contact_ids, list_ids from new_members;
  if contact_ids is null then
    return null;
  end if;
  -- A row deleted by a transaction that committed meanwhile is not locked, so not counted.
  select count(*) into locked from (select from contacts c where c.id = any(contact_ids) for key share of c) s;
  if locked <> cardinality(contact_ids) then
    raise foreign_key_violation using message = 'list_members.contact_id names a contact that does not exist', table = 'list_members';
  end if;
  select count(*) into locked from (select from lists l where l.id = any(list_ids) for key share of l) s;
  if locked <> cardinality(list_ids) then
    raise foreign_key_violation using message = 'list_members.list_id names a list that does not exist', table = 'list_members';
  end if;
  return null;
end $$;

create trigger list_members_refs_insert after insert on list_members
  referencing new table as new_members for each statement execute function list_members_check_refs();
create trigger list_members_refs_update after update on list_members
  referencing new table as new_members for each statement execute function list_members_check_refs();

create function contacts_delete_members() returns trigger
language plpgsql set search_path from current as $$
begin
  delete from list_members m using gone g where m.contact_id = g.id;
  return null;
end $$;

create trigger contacts_delete_members after delete on contacts
  referencing old table as gone for each statement execute function contacts_delete_members();

create function lists_delete_members() returns trigger
language plpgsql set search_path from current as $$
begin
  delete from list_members m using gone g where m.list_id = g.id;
  return null;
end $$;

create trigger lists_delete_members after delete on lists
  referencing old table as gone for each statement execute function lists_delete_members();

create function contacts_refuse_member_key_change() returns trigger
language plpgsql set search_path from current as $$
begin
  if exists (select from list_members where contact_id = old.id) then
    raise foreign_key_violation using message = format('contact %s has list members: its id cannot change', old.id), table = 'contacts';
  end if;
  return new;
end $$;

create function lists_refuse_member_key_change() returns trigger
language plpgsql set search_path from current as $$
begin
  if exists (select from list_members where list_id = old.id) then
    raise foreign_key_violation using message = format('list %s has members: its id cannot change', old.id), table = 'lists';
  end if;
  return new;
end $$;

create trigger contacts_member_key before update of id on contacts
  for each row when (old.id is distinct from new.id) execute function contacts_refuse_member_key_change();
create trigger lists_member_key before update of id on lists
  for each row when (old.id is distinct from new.id) execute function lists_refuse_member_key_change();

create function refuse_truncate_with_members() returns trigger
language plpgsql set search_path from current as $$
begin
  if exists (select from list_members) then
    raise foreign_key_violation using message = format('%s cannot be truncated while list_members has rows (truncate list_members with it)', tg_table_name);
  end if;
  return null;
end $$;

create trigger contacts_truncate after truncate on contacts
  for each statement execute function refuse_truncate_with_members();
create trigger lists_truncate after truncate on lists
  for each statement execute function refuse_truncate_with_members();
