/** Bun's file loader: `import path from "x.csv" with { type: "file" }` yields the file's path (inside the binary once compiled). */
declare module "*.csv" {
  const path: string;
  export default path;
}
