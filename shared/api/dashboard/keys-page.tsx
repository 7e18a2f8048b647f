/**
 * GET /dashboard/keys: the API keys (never a secret or a hash), a form to make one, and a
 * Revoke button each. A key just made is shown once, on the page its POST answers (not in a
 * redirect's address, which browsers keep in their history).
 */
import type { ApiKeyInfo } from "../api-keys";
import { DASHBOARD_PATH, type Operator } from "./access";
import { relative, timestamp } from "./format";
import { ActionButton, CsrfField, Layout } from "./layout";

export function KeysPage(props: {
  keys: ApiKeyInfo[];
  operator: Operator;
  nonce: string;
  now: Date;
  notice?: string | null;
  /** The key made by this request: shown once. */
  created?: { id: string; key: string; who: string };
}) {
  const { keys, operator, now } = props;
  const back = `${DASHBOARD_PATH}/keys`;
  return (
    <Layout title="API keys" nonce={props.nonce} operator={operator} notice={props.notice}>
      <h1>API keys</h1>
      {props.created ? (
        <section class="panel" data-testid="created-key">
          <h2>New key {props.created.id}<small>{props.created.who}</small></h2>
          <p>Copy it now: it is shown only this once (only its hash is kept).</p>
          <pre class="mono">{props.created.key}</pre>
        </section>
      ) : null}
      <section class="panel" id="new-key">
        <h2>Make a key</h2>
        <form method="post" action={`${DASHBOARD_PATH}/keys`} class="filters">
          <CsrfField operator={operator} />
          <label>
            for tenant
            <input name="tenant" pattern="[A-Za-z0-9_.:\-]{1,64}" placeholder="tenant id" aria-label="Tenant id" size={14} />
          </label>
          <label>
            <input type="checkbox" name="admin" value="true" aria-label="Admin key" /> or an admin key
          </label>
          <label>
            name
            <input name="name" maxlength={200} placeholder="what it is for" aria-label="Name" size={20} />
          </label>
          <button type="submit" class="primary">Make key</button>
        </form>
      </section>
      <section class="panel" id="keys">
        <h2>Keys<small>revoking one ends it at once here, within 5 s on other Node processes</small></h2>
        <div class="table-scroll">
          <table data-testid="keys">
            <thead>
              <tr>
                <th>Id</th>
                <th>For</th>
                <th>Name</th>
                <th>Created</th>
                <th>State</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr data-key={k.id}>
                  <td class="mono">{k.id}</td>
                  <td>{k.admin ? <b>admin</b> : <span class="mono">{k.tenantId}</span>}</td>
                  <td>{k.name}</td>
                  <td title={timestamp(k.createdAt)}>{relative(k.createdAt, now)}</td>
                  <td>
                    {k.revokedAt ? (
                      <span class="badge b-cancelled" title={timestamp(k.revokedAt)}>revoked {relative(k.revokedAt, now)}</span>
                    ) : (
                      <span class="badge b-live">active</span>
                    )}
                  </td>
                  <td>
                    {k.revokedAt ? null : (
                      <ActionButton
                        operator={operator}
                        action={`${DASHBOARD_PATH}/keys/${k.id}/revoke`}
                        label="Revoke"
                        back={back}
                        variant="danger"
                        title={k.id === operator.principal.keyId ? "This is the key you are using" : `Revoke ${k.id}`}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
    </Layout>
  );
}
