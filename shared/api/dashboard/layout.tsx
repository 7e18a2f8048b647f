/**
 * The page shell: head, top bar, the stylesheet and the auto-refresh script. No external asset
 * of any kind (the Content-Security-Policy allows none): system fonts, inline style, inline SVG.
 */
import type { Child } from "hono/jsx";
import { CSRF_FIELD, DASHBOARD_PATH, type Operator } from "./access";

/**
 * A constant of this module, never data: it goes out unescaped because CSS quotes and `>`
 * would be mangled by escaping.
 */
const STYLESHEET = `
:root { --bg: #f5f6f8; --panel: #fff; --line: #e2e5ea; --text: #1b2230; --muted: #6a7383; --accent: #2f5bd3;
  --green: #1d8a4e; --red: #c8372d; --amber: #b26a00; --blue: #2f5bd3; --violet: #6d3fc0; --grey: #7a8190; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--text); font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
header.top { display: flex; align-items: center; gap: 18px; padding: 0 20px; height: 46px; background: #172033; color: #e8ecf3; }
header.top .brand { font-weight: 650; letter-spacing: .2px; color: #fff; }
header.top .brand span { color: #9fb3dc; font-weight: 500; }
header.top nav { display: flex; gap: 14px; }
header.top nav a { color: #c9d3e6; }
header.top nav a:hover { color: #fff; text-decoration: none; }
header.top .right { margin-left: auto; display: flex; align-items: center; gap: 14px; color: #aab6cc; font-size: 12px; }
header.top label { display: flex; align-items: center; gap: 5px; cursor: pointer; }
header.top form { margin: 0; }
header.top button { background: transparent; color: #dfe6f3; border-color: #4a5872; }
main { padding: 16px 20px 40px; max-width: 1480px; margin: 0 auto; }
h1 { font-size: 18px; margin: 4px 0 14px; font-weight: 650; }
h2 { font-size: 13px; margin: 0 0 10px; font-weight: 650; text-transform: uppercase; letter-spacing: .5px; color: #3b4456; }
h2 small { text-transform: none; letter-spacing: 0; font-weight: 400; color: var(--muted); margin-left: 6px; }
section.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; min-width: 0; }
/* Halves: the scaling table needs about 580 px (at 1.35fr/1fr it got 540 at 1,400 px and lost its signal column); one column below 1,300 px. */
.grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; }
.grid section.panel { margin-bottom: 0; }
.grid + * { margin-top: 16px; }
@media (max-width: 1300px) { .grid { grid-template-columns: minmax(0, 1fr); } }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap: 10px; margin-bottom: 16px; }
.tile { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .n { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .l { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .4px; }
.tile.bad .n { color: var(--red); }
.tile.warn .n { color: var(--amber); }
.tile.good .n { color: var(--green); }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .4px; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 5px 8px; border-bottom: 1px solid #eef0f3; vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.zero, tr.priority-row td.zero { color: #c0c5cf; }
tr.type-row td { border-top: 1px solid var(--line); font-weight: 600; }
tr.priority-row td { color: #4a5263; font-size: 12px; padding-top: 2px; padding-bottom: 2px; }
tr.priority-row td.first { padding-left: 22px; }
tr.silent td { background: #fff5f4; color: #8b4a44; }
.table-scroll { overflow-x: auto; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 600; line-height: 17px; white-space: nowrap; background: #eef0f3; color: #4a5263; }
.b-queued { background: #e7eefc; color: var(--blue); }
.b-active { background: #efe8fb; color: var(--violet); }
.b-scheduled { background: #eef0f3; color: #4a5263; }
.b-paused { background: #fff1dc; color: var(--amber); }
.b-failed, .b-silent, .b-scale_up { background: #fde9e7; color: var(--red); }
.b-completed, .b-live, .b-hold { background: #e4f5eb; color: var(--green); }
.b-cancelled { background: #eef0f3; color: var(--grey); }
.muted { color: var(--muted); }
.small { font-size: 11px; }
.nowrap { white-space: nowrap; }
.actions { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.actions form, form.inline { display: inline; margin: 0; }
button, .button { font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 5px; border: 1px solid #c9ced8; background: #fff; color: var(--text); cursor: pointer; line-height: 18px; }
button:hover { border-color: #9aa3b3; background: #f7f8fa; }
button.danger { color: var(--red); border-color: #eab7b2; }
button.danger:hover { background: #fdf1f0; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.primary:hover { background: #2549b0; }
input, select { font: inherit; font-size: 12px; padding: 3px 7px; border: 1px solid #c9ced8; border-radius: 5px; background: #fff; color: var(--text); }
form.filters { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
form.filters label { color: var(--muted); font-size: 12px; display: flex; gap: 5px; align-items: center; }
.notice { background: #e4f5eb; border: 1px solid #b9e2c9; color: #14532d; padding: 8px 12px; border-radius: 6px; margin-bottom: 14px; }
.error-box { background: #fdf1f0; border: 1px solid #f0c4bf; color: #7f1d1d; padding: 10px 12px; border-radius: 6px; margin-bottom: 14px; }
pre { background: #f7f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow: auto; max-height: 420px; margin: 0; white-space: pre-wrap; word-break: break-word; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
ol.timeline { list-style: none; margin: 0; padding: 0; }
ol.timeline li { display: grid; grid-template-columns: 90px 190px 1fr; gap: 8px; padding: 4px 0; border-bottom: 1px solid #eef0f3; }
ol.timeline li:last-child { border-bottom: 0; }
ol.timeline li.pending { color: #b4bac5; }
.chart svg { display: block; width: 100%; height: auto; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin-top: 6px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.bar { display: inline-block; width: 60px; height: 6px; background: #eef0f3; border-radius: 3px; overflow: hidden; vertical-align: middle; margin-left: 6px; }
.bar i { display: block; height: 100%; background: var(--violet); }
.bar.hot i { background: var(--red); }
.pager { display: flex; justify-content: space-between; align-items: center; margin-top: 8px; font-size: 12px; }
.login { max-width: 420px; margin: 80px auto; }
.login input { width: 100%; padding: 7px 9px; font-size: 13px; margin: 6px 0 12px; }
.login button { padding: 6px 14px; font-size: 13px; }
.error-msg { color: var(--red); max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; display: inline-block; vertical-align: bottom; }
`;

/**
 * Refreshes the page every 5 s while "Auto-refresh" is on, the tab is visible and no form
 * field has focus (so typing a filter is never wiped). Also drops the one-time notice from the
 * address. A constant of this module, run under a per-response nonce.
 */
const LIVE_SCRIPT = `
(function () {
  var url = new URL(location.href);
  if (url.searchParams.has("notice")) {
    ["notice", "n_job", "n_type", "n_tenant", "n_count", "n_key"].forEach(function (k) { url.searchParams.delete(k); });
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  var box = document.getElementById("live");
  if (!box) return;
  var saved = sessionStorage.getItem("pm-dashboard-live");
  if (saved !== null) box.checked = saved === "1";
  box.addEventListener("change", function () { sessionStorage.setItem("pm-dashboard-live", box.checked ? "1" : "0"); });
  setInterval(function () {
    if (!box.checked || document.hidden) return;
    var focused = document.activeElement;
    if (focused && /^(INPUT|SELECT|TEXTAREA)$/.test(focused.tagName) && focused !== box) return;
    location.reload();
  }, 5000);
})();
`;

/** The hidden field every action form carries. */
export const CsrfField = (props: { operator: Operator }) => <input type="hidden" name={CSRF_FIELD} value={props.operator.csrf} />;

/** One button in its own POST form (a form cannot nest, so each action is one). */
export function ActionButton(props: {
  operator: Operator;
  action: string;
  label: string;
  back: string;
  variant?: "danger" | "primary";
  fields?: Record<string, string>;
  title?: string;
}) {
  return (
    <form method="post" action={props.action} class="inline">
      <CsrfField operator={props.operator} />
      <input type="hidden" name="back" value={props.back} />
      {Object.entries(props.fields ?? {}).map(([name, value]) => (
        <input type="hidden" name={name} value={value} />
      ))}
      <button type="submit" class={props.variant ?? ""} title={props.title}>
        {props.label}
      </button>
    </form>
  );
}

export const StateBadge = (props: { state: string }) => <span class={`badge b-${props.state}`}>{props.state}</span>;

export interface LayoutProps {
  title: string;
  nonce: string;
  operator?: Operator;
  /** Refresh the page every 5 s (overview, and pages of jobs that are still moving). */
  live?: boolean;
  notice?: string | null;
  children?: Child;
}

export function Layout(props: LayoutProps) {
  const { operator } = props;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="no-referrer" />
        <title>{`${props.title} · PenguinMails Jobs`}</title>
        <link rel="icon" href="data:," />
        {props.live ? (
          <noscript>
            <meta http-equiv="refresh" content="5" />
          </noscript>
        ) : null}
        <style dangerouslySetInnerHTML={{ __html: STYLESHEET }} />
      </head>
      <body>
        <header class="top">
          <a class="brand" href={DASHBOARD_PATH}>
            PenguinMails Jobs <span>· Operations</span>
          </a>
          {operator ? (
            <nav>
              <a href={DASHBOARD_PATH}>Overview</a>
              <a href={`${DASHBOARD_PATH}?state=active#jobs`}>Active</a>
              <a href={`${DASHBOARD_PATH}?state=failed#jobs`}>Failed</a>
              <a href={`${DASHBOARD_PATH}#workers`}>Workers</a>
              <a href={`${DASHBOARD_PATH}/keys`}>Keys</a>
            </nav>
          ) : null}
          {operator ? (
            <div class="right">
              {props.live ? (
                <label title="Reload this page every 5 seconds">
                  <input type="checkbox" id="live" checked /> Auto-refresh
                </label>
              ) : null}
              <span title={`key ${operator.principal.keyId}`}>admin · {operator.via === "session" ? "session" : "bearer key"}</span>
              {operator.via === "session" ? (
                <form method="post" action={`${DASHBOARD_PATH}/logout`}>
                  <CsrfField operator={operator} />
                  <button type="submit">Log out</button>
                </form>
              ) : null}
            </div>
          ) : null}
        </header>
        <main>
          {props.notice ? (
            <div class="notice" role="status">
              {props.notice}
            </div>
          ) : null}
          {props.children}
        </main>
        {props.live ? <script nonce={props.nonce} dangerouslySetInnerHTML={{ __html: LIVE_SCRIPT }} /> : null}
      </body>
    </html>
  );
}

/** A page that says what went wrong and where to go next. */
export function ErrorPage(props: { nonce: string; operator?: Operator; status: number; title: string; message: string }) {
  return (
    <Layout title={props.title} nonce={props.nonce} operator={props.operator}>
      <section class="panel" style="max-width: 640px">
        <h1>
          {props.status} · {props.title}
        </h1>
        <div class="error-box">{props.message}</div>
        <p class="actions">
          {props.status === 401 || props.status === 403 ? <a href={`${DASHBOARD_PATH}/login`}>Log in with an admin key</a> : null}
          {props.status !== 401 ? <a href={DASHBOARD_PATH}>Back to the overview</a> : null}
        </p>
      </section>
    </Layout>
  );
}
