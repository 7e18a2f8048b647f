-- DKIM keys of tenants' sending domains: mail over SMTP is signed with the active key of its
-- From domain (nodemailer's DKIM signer); Resend signs its own. A rotation makes a new active
-- key under a new selector and leaves the old one 'retiring' until retire_after, so mail signed
-- with it and still in transit verifies against the DNS record its selector names; after that
-- it is 'retired' (its record may be removed).
--
-- The private key is never stored in clear: private_key_sealed is `v1.<base64url nonce ‖
-- AES-256-GCM(PKCS#8 DER) ‖ tag>` under a key derived from DKIM_ENCRYPTION_KEY, with the row's
-- (tenant, domain, selector) as associated data, so a sealed key copied onto another row (or
-- another tenant's) does not open (shared/email/dkim-crypto.ts).
create table dkim_keys (
  id                 bigint generated always as identity primary key,
  -- The key routes make the tenant's row when it has none (tenants holds only settings).
  tenant_id          text        not null references tenants (id) on delete cascade,
  domain             text        not null check (domain = lower(domain) and length(domain) between 3 and 253),
  selector           text        not null check (selector ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  private_key_sealed text        not null check (private_key_sealed like 'v1.%'),
  -- What the DNS record publishes as p=: the SubjectPublicKeyInfo, base64 (DER).
  public_key         text        not null,
  status             text        not null default 'active' check (status in ('active', 'retiring', 'retired')),
  created_at         timestamptz not null default now(),
  retire_after       timestamptz,
  -- A key stops being active only with the time until which it still verifies.
  check (status = 'active' or retire_after is not null),
  unique (tenant_id, domain, selector),
  unique (tenant_id, id)
);

-- At most one key signs a tenant's domain at a time; also the signer's lookup.
create unique index dkim_keys_active_idx on dkim_keys (tenant_id, domain) where status = 'active';
