-- DropTable (reviewed: nothing reads it since the previous release)
-- squawk-ignore ban-drop-table, require-lock-timeout, require-statement-timeout
DROP TABLE "AuditLog";
