-- AlterTable
ALTER TABLE "Invoice" ADD COLUMN "currency" TEXT NOT NULL;
