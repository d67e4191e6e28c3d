-- One statement per rule in lint_migrations.DESTRUCTIVE_RULES (squawk 2.70.0's names).
ALTER TABLE "Invoice" DROP COLUMN "legacyRef";
DROP TABLE "AuditLog";
DROP SCHEMA "archive" CASCADE;
DROP DATABASE "scratch";
TRUNCATE "Invoice" CASCADE;
ALTER TABLE "Invoice" ALTER COLUMN "amount" SET DATA TYPE INTEGER;
ALTER TABLE "Invoice" RENAME COLUMN "note" TO "memo";
ALTER TABLE "Invoice" RENAME TO "Bill";
