/** @jsxImportSource @kitajs/html */
import { paths } from "./components.tsx";
import { Layout } from "./layout.tsx";

/** A plain page for errors and notices (404, a refused form). */
export function MessagePage(props: { title: string; message: string }) {
  return (
    <Layout title={props.title}>
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
