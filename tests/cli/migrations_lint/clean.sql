-- A nullable column, with bounds on how long it may wait for its lock and run.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- AlterTable
ALTER TABLE "Invoice" ADD COLUMN "note" TEXT;
