CREATE TABLE "instance_settings" (
	"key" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "leak_reports" (
	"id" text PRIMARY KEY NOT NULL,
	"key_hash" text NOT NULL,
	"display" text NOT NULL,
	"source" text NOT NULL,
	"url" text,
	"reporter" text NOT NULL,
	"report_key" text NOT NULL,
	"key_id" text,
	"account_id" text,
	"outcome" text DEFAULT 'pending' NOT NULL,
	"action" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"processed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "leak_policy" text DEFAULT 'rotate' NOT NULL;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "leaked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "leaked_url" text;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "leaked_by" text;--> statement-breakpoint
CREATE UNIQUE INDEX "leak_reports_report_key_idx" ON "leak_reports" USING btree ("report_key");--> statement-breakpoint
CREATE INDEX "leak_reports_pending_idx" ON "leak_reports" USING btree ("outcome","created_at");--> statement-breakpoint
CREATE INDEX "leak_reports_account_idx" ON "leak_reports" USING btree ("account_id","created_at");