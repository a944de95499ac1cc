export * from "../accounts/accounts.sql.ts";
export * from "../keys/keys.sql.ts";
export * from "../usage/usage.sql.ts";
export * from "../audit/audit.sql.ts";
export * from "../rotation/rotation.sql.ts";
export * from "../notify/notify.sql.ts";
export * from "../billing/billing.sql.ts";
