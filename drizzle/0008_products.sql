CREATE TABLE "product_specs" (
	"product_id" text NOT NULL,
	"version" integer NOT NULL,
	"spec" jsonb NOT NULL,
	"source" text NOT NULL,
	"spec_version" text DEFAULT '' NOT NULL,
	"operations" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "product_specs_product_id_version_pk" PRIMARY KEY("product_id","version")
);
--> statement-breakpoint
CREATE TABLE "products" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"upstream_url" text NOT NULL,
	"sandbox_url" text,
	"timeout_ms" integer DEFAULT 30000 NOT NULL,
	"max_body_bytes" integer DEFAULT 10485760 NOT NULL,
	"validate_requests" boolean DEFAULT false NOT NULL,
	"secret_sealed" text NOT NULL,
	"active_version" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "product_specs" ADD CONSTRAINT "product_specs_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE cascade ON UPDATE no action;