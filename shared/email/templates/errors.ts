/** Why a template cannot be rendered; never worth a retry. */
export class TemplateError extends Error {
  override name = "TemplateError";
  constructor(
    readonly code: "unknown_template" | "invalid_variables" | "invalid_template",
    message: string,
    /** For invalid_variables / invalid_template: the offending paths and messages. */
    readonly issues: readonly { path: string; message: string }[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  readonly retryable = false;
}

export function issuesOf(error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }) {
  return error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
}
