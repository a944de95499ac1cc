/** @jsxImportSource @kitajs/html */

/**
 * One message's content, from which both parts are made: the HTML part (escaped JSX, inline
 * styles, no images, no tracking) and the plain-text part. A message is paragraphs, at most
 * one action link, and notes under it; nothing else, so the two parts always say the same.
 */
export interface MailContent {
  subject: string;
  /** Short paragraphs of plain text (escaped in the HTML part). */
  paragraphs: string[];
  /** The one link the message exists for (a reset, a verification) or a page to open. */
  action?: { label: string; url: string };
  /** Smaller print under the action: why the mail came, how long the link works. */
  notes?: string[];
  /** A notice that can be turned off: the one-click unsubscribe link (also in List-Unsubscribe). */
  unsubscribeUrl?: string;
}

const FONT = "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";

function MailHtml(props: { content: MailContent }) {
  const c = props.content;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width" />
        <title safe>{c.subject}</title>
      </head>
      <body style={`margin:0;padding:24px;background:#f6f7f9;color:#1d2330;${FONT}`}>
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0">
          <tr>
            <td style="max-width:560px;margin:0 auto;background:#ffffff;border-radius:8px;padding:24px">
              <p style="margin:0 0 16px;font-weight:600">Keyport</p>
              {c.paragraphs.map((p) => (
                <p style="margin:0 0 12px;line-height:1.5" safe>
                  {p}
                </p>
              ))}
              {c.action ? (
                <p style="margin:20px 0">
                  <a href={c.action.url} style="display:inline-block;background:#2f5bea;color:#ffffff;text-decoration:none;padding:10px 16px;border-radius:6px" safe>
                    {c.action.label}
                  </a>
                </p>
              ) : (
                ""
              )}
              {c.action ? (
                <p style="margin:0 0 12px;font-size:13px;color:#5a6272;word-break:break-all">
                  <span>Or open this address: </span>
                  <span safe>{c.action.url}</span>
                </p>
              ) : (
                ""
              )}
              {(c.notes ?? []).map((n) => (
                <p style="margin:0 0 8px;font-size:13px;color:#5a6272" safe>
                  {n}
                </p>
              ))}
              {c.unsubscribeUrl ? (
                <p style="margin:16px 0 0;font-size:12px;color:#5a6272">
                  <a href={c.unsubscribeUrl} style="color:#5a6272">
                    Stop these notices
                  </a>
                </p>
              ) : (
                ""
              )}
            </td>
          </tr>
        </table>
      </body>
    </html>
  );
}

/** The plain-text part of the same content. */
function mailText(c: MailContent): string {
  const lines = [...c.paragraphs];
  if (c.action) lines.push(`${c.action.label}: ${c.action.url}`);
  if (c.notes?.length) lines.push(...c.notes);
  if (c.unsubscribeUrl) lines.push(`Stop these notices: ${c.unsubscribeUrl}`);
  return `${lines.join("\n\n")}\n\n-- \nKeyport\n`;
}

/** Both parts of a message. URLs in it must be built from route constants and encodeURIComponent. */
export function renderMail(c: MailContent): { subject: string; text: string; html: string } {
  return { subject: c.subject, text: mailText(c), html: "<!doctype html>" + (MailHtml({ content: c }) as string) };
}
