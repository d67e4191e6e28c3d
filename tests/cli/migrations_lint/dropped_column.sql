-- AlterTable
ALTER TABLE "Invoice" DROP COLUMN "legacyRef";
