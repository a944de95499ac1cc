/** @jsxImportSource @kitajs/html */
import { paths } from "../components.tsx";
import { Layout } from "../layout.tsx";

export function HomePage(props: { origin: string; keyPrefix: string }) {
  return (
    <Layout title="Welcome">
      <section class="card">
        <h1>Keyport</h1>
        <p>Create scoped API keys, watch their usage and call the data API with them.</p>
        <p>
          <a class="button" href={paths.signup}>
            Sign up
          </a>{" "}
          or <a href={paths.login}>log in</a>.
        </p>
        <p>Programs call the metered data API with a key:</p>
        <pre safe>{`curl -H "Authorization: Bearer ${props.keyPrefix}_live_…" ${props.origin}/v1/email/someone@example.com`}</pre>
      </section>
    </Layout>
  );
}
