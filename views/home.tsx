import { Layout } from "./layout.tsx";

export function HomePage(props: { origin: string; keyPrefix: string }) {
  return (
    <Layout title="Welcome">
      <section class="card">
        <h1>Keyport</h1>
        <p>A self-hosted developer portal and API-key gateway.</p>
        <p>Programs call the metered data API with a key:</p>
        <pre safe>{`curl -H "Authorization: Bearer ${props.keyPrefix}_live_…" ${props.origin}/v1/email/someone@example.com`}</pre>
        <p>
          Operators: <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a>.
        </p>
      </section>
    </Layout>
  );
}
