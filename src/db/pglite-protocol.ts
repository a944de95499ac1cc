/** Messages between the main thread's PgliteWorkerClient and the worker owning PGlite. */
export interface PgliteAssetPaths {
  pgliteWasm: string;
  initdbWasm: string;
  pgliteData: string;
}

export type WorkerRequest =
  | {
      id: number;
      op: "open";
      dataDir: string | undefined;
      assets: PgliteAssetPaths | undefined;
      /** A data directory dumped by `dump` (a tar file) to start from instead of running initdb. */
      loadDataDir: Blob | undefined;
      /** postgresql.conf lines of this process (tests start many small databases). */
      settings: string[] | undefined;
    }
  | {
      id: number;
      op: "query";
      sql: string;
      params: unknown[] | undefined;
      rowMode: "array" | "object" | undefined;
      /** Type ids answered as the text Postgres sent (parser functions cannot cross threads). */
      textTypes: number[];
    }
  | { id: number; op: "dump" }
  | { id: number; op: "close" };

export type WorkerReply = { id: number; result: unknown } | { id: number; error: Record<string, unknown> };
