/**
 * A tenant's JSON calls to the API in tests: `call` answers { status, json }, `ok` throws on a
 * 4xx/5xx (naming the call and the problem) and answers the JSON. `request` is an app's own
 * (app.request) or fetch against a running server.
 */
export type Requester = (path: string, init: RequestInit) => Response | Promise<Response>;

export function jsonApi(request: Requester, key: string) {
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const res = await request(path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: res.status === 204 ? null : await res.json() };
  };
  const ok = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await call(method, path, body);
    if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.json)}`);
    return res.json;
  };
  return { call, ok };
}
