/** GET /dashboard/login: the admin pastes the key once; a signed session cookie does the rest. */
import { DASHBOARD_PATH } from "./access";
import { duration } from "./format";
import { Layout } from "./layout";

export function LoginPage(props: { nonce: string; next: string; error?: string; sessionTtlMs: number }) {
  return (
    <Layout title="Log in" nonce={props.nonce}>
      <section class="panel login">
        <h1>Operations dashboard</h1>
        <p class="muted">
          Paste an admin API key (<code>pmk_…</code>). It is checked once and never stored in the browser: you get a session
          of {duration(props.sessionTtlMs / 1000)}, kept in an HttpOnly cookie.
        </p>
        {props.error ? (
          <div class="error-box" role="alert" data-testid="login-error">
            {props.error}
          </div>
        ) : null}
        <form method="post" action={`${DASHBOARD_PATH}/login`}>
          <input type="hidden" name="next" value={props.next} />
          <label for="key">Admin API key</label>
          <input id="key" name="key" type="password" autocomplete="off" spellcheck={false} required autofocus />
          <button type="submit" class="primary">
            Log in
          </button>
        </form>
      </section>
    </Layout>
  );
}
