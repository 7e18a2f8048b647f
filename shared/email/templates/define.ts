import type { ReactElement } from "react";
import { z } from "zod";
import type { LayoutOptions } from "./layout";

/**
 * A template PenguinMails itself owns, written as a React component. Its variables arrive as the
 * flat record an email.send job carries (`variables`), parsed by the template's zod schema.
 */
export interface SystemTemplate<S extends z.ZodType = z.ZodType> {
  readonly id: string;
  readonly description: string;
  /** The variables schema: parse the job's `variables` with it. */
  readonly variables: S;
  subject(variables: z.output<S>): string;
  element(variables: z.output<S>, layout: LayoutOptions): ReactElement;
}

export function defineSystemTemplate<S extends z.ZodType>(template: SystemTemplate<S>): SystemTemplate<S> {
  return template;
}

/** Link targets in system mail: absolute http(s) URLs only. */
export const httpUrl = z.url({ protocol: /^https?$/ }).max(2_048);

/** Variables every system template takes for the shared layout's footer. */
export const layoutVariables = {
  /** Puts an "Unsubscribe" link in the footer. */
  unsubscribe_url: httpUrl.nullish(),
  /** The sender's postal address, shown in the footer. */
  sender_address: z.string().max(500).nullish(),
};

/** Numbers for people: 1,234. */
const numberFormat = new Intl.NumberFormat("en-US");
export const formatCount = (n: number): string => numberFormat.format(n);

/** "1 May 2026, 09:30 UTC": one unambiguous form, whatever the reader's locale. */
const dateFormat = new Intl.DateTimeFormat("en-GB", { dateStyle: "long", timeStyle: "short", timeZone: "UTC" });
export const formatTime = (iso: string): string => `${dateFormat.format(new Date(iso))} UTC`;
