/** @jsxImportSource @kitajs/html */
import { paths } from "./components.tsx";
import { Layout, type PageSession } from "./layout.tsx";

/** A plain page for errors and notices (404, a refused form); with the signed-in navigation when there is a session. */
export function MessagePage(props: { title: string; message: string; session?: PageSession }) {
  return (
    <Layout title={props.title} session={props.session}>
      <section class="card narrow">
        <h1 safe>{props.title}</h1>
        <p safe>{props.message}</p>
        <p>
          <a href={paths.dashboard}>Back to the portal</a>
        </p>
      </section>
    </Layout>
  );
}
