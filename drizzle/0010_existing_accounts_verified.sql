-- Accounts made before address verification existed keep working as they did: their
-- addresses count as verified (a new sign-up is verified by the link it is sent).
UPDATE "accounts" SET "email_verified_at" = "created_at" WHERE "email_verified_at" IS NULL;
