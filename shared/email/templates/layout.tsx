/** @jsxImportSource react */
import { Body } from "@react-email/body";
import { Container } from "@react-email/container";
import { Head } from "@react-email/head";
import { Hr } from "@react-email/hr";
import { Html } from "@react-email/html";
import { Link } from "@react-email/link";
import { Preview } from "@react-email/preview";
import { Section } from "@react-email/section";
import { Text } from "@react-email/text";
import type { CSSProperties, ReactNode } from "react";

export const DEFAULT_BRAND_NAME = "PenguinMails";

/** Per-sender settings of the layout (the tenant's, or PenguinMails' own for system mail). */
export interface LayoutOptions {
  /** Shown in the header. Default: PenguinMails. */
  brandName?: string;
  /** The sender's postal address in the footer (CAN-SPAM / CASL). */
  postalAddress?: string;
}

export interface EmailLayoutProps extends LayoutOptions {
  children?: ReactNode;
  /** The inbox preview line. Static per template: its padding depends on its length. */
  preview?: string;
  /** When given (non-empty), the footer carries an "Unsubscribe" link to it. */
  unsubscribeUrl?: string;
}

export const colors = {
  brand: "#1f6feb",
  text: "#1f2328",
  muted: "#6e7781",
  rule: "#d0d7de",
  background: "#f6f8fa",
} as const;

const styles = {
  body: {
    backgroundColor: colors.background,
    fontFamily: '-apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif',
    margin: 0,
    padding: "24px 0",
  },
  container: { backgroundColor: "#ffffff", border: `1px solid ${colors.rule}`, borderRadius: "8px", padding: "0 32px" },
  header: { padding: "20px 0 4px" },
  brand: { color: colors.brand, fontSize: "18px", fontWeight: 700, letterSpacing: "0.2px", margin: 0 },
  content: { color: colors.text, padding: "4px 0 16px" },
  rule: { borderTop: `1px solid ${colors.rule}`, margin: 0 },
  footer: { padding: "8px 0 16px" },
  footerText: { color: colors.muted, fontSize: "12px", lineHeight: "18px", margin: "8px 0" },
  footerLink: { color: colors.muted, textDecorationLine: "underline" },
} satisfies Record<string, CSSProperties>;

/**
 * The frame of every email PenguinMails sends: brand header, the body, and a footer with the
 * sender's postal address and, when there is one, the unsubscribe link.
 */
export function EmailLayout({ children, preview, brandName, postalAddress, unsubscribeUrl }: EmailLayoutProps) {
  return (
    <Html lang="en">
      <Head />
      {preview ? <Preview>{preview}</Preview> : null}
      <Body style={styles.body}>
        <Container style={styles.container}>
          <Section style={styles.header}>
            <Text style={styles.brand}>{brandName ?? DEFAULT_BRAND_NAME}</Text>
          </Section>
          <Section style={styles.content}>{children}</Section>
          <Hr style={styles.rule} />
          <Section style={styles.footer}>
            {postalAddress !== undefined ? <Text style={styles.footerText}>{postalAddress}</Text> : null}
            {unsubscribeUrl ? (
              <Text style={styles.footerText}>
                <Link href={unsubscribeUrl} style={styles.footerLink}>
                  Unsubscribe
                </Link>
              </Text>
            ) : null}
          </Section>
        </Container>
      </Body>
    </Html>
  );
}

/** Shared styles for content blocks, so system and tenant templates look alike. */
export const blockStyles = {
  heading: { color: colors.text, fontSize: "22px", lineHeight: "30px", fontWeight: 600, margin: "16px 0 8px" },
  text: { color: colors.text, fontSize: "15px", lineHeight: "24px", margin: "12px 0" },
  buttonSection: { padding: "12px 0" },
  button: {
    backgroundColor: colors.brand,
    borderRadius: "6px",
    color: "#ffffff",
    fontSize: "15px",
    fontWeight: 600,
    padding: "12px 20px",
    textDecoration: "none",
  },
  divider: { borderTop: `1px solid ${colors.rule}`, margin: "16px 0" },
  muted: { color: colors.muted, fontSize: "13px", lineHeight: "20px", margin: "8px 0" },
} satisfies Record<string, CSSProperties>;
