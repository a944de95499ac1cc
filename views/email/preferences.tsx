/** @jsxImportSource @kitajs/html */
import { EMAIL_LINKS } from "../../src/email/preferences.ts";
import { paths } from "../components.tsx";
import { Layout } from "../layout.tsx";

/**
 * The page behind a notice's unsubscribe link. Opening the link changes nothing (mail
 * scanners open links): the button posts it, as a mail client's one-click unsubscribe
 * (RFC 8058) does without showing the page.
 */
export interface UnsubscribeProps {
  /** The link's own parameters, checked: the form posts them back. */
  link: { a: string; c: string; t: string };
  /** The category in words (MAIL_CATEGORIES). */
  what: string;
  state: "confirm" | "already" | "done";
}

export function UnsubscribePage(props: UnsubscribeProps) {
  const l = props.link;
  const action = `${EMAIL_LINKS.unsubscribe}?a=${encodeURIComponent(l.a)}&c=${encodeURIComponent(l.c)}&t=${encodeURIComponent(l.t)}`;
  return (
    <Layout title="Mail notices">
      <section class="card narrow">
        <h1>Mail notices</h1>
        <p>
          Notices of <strong safe>{props.what.toLowerCase()}</strong>{" "}
          {props.state === "done" ? "are now off: no more of them will be mailed." : props.state === "already" ? "are already off for this account." : "are mailed to this account."}
        </p>
        {props.state === "confirm" ? (
          <form method="post" action={action}>
            <input type="hidden" name="List-Unsubscribe" value="One-Click" />
            <button type="submit">Turn these notices off</button>
          </form>
        ) : (
          ""
        )}
        <p class="muted">Security notices (a leaked key, a rotation started because of a leak, a changed password) are always sent. Every notice stays on the notifications page.</p>
        <p>
          <a href={`${paths.settings}#mail`}>Mail preferences in Settings</a>
        </p>
      </section>
    </Layout>
  );
}

/** The page behind a change_email link: the button replaces the address (opening the link does not). */
export interface ConfirmEmailProps {
  token: string;
  email: string;
  oldEmail: string;
  state: "confirm" | "done";
}

export function ConfirmEmailPage(props: ConfirmEmailProps) {
  return (
    <Layout title="Confirm your new address">
      <section class="card narrow">
        <h1>Confirm your new address</h1>
        {props.state === "done" ? (
          <>
            <p class="ok" role="status">
              The account now uses <strong safe>{props.email}</strong>; sign in with it from now on. A notice went to <span safe>{props.oldEmail}</span>.
            </p>
            <p>
              <a href={paths.settings}>Open your settings</a>
            </p>
          </>
        ) : (
          <form method="post" action={EMAIL_LINKS.confirmEmail}>
            <p>
              Use <strong safe>{props.email}</strong> instead of <span safe>{props.oldEmail}</span> for this Keyport account?
            </p>
            <input type="hidden" name="token" value={props.token} />
            <button type="submit">Use this address</button>
          </form>
        )}
      </section>
    </Layout>
  );
}
