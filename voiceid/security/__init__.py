"""Key lifecycle, failed-authentication throttling and the audit trail (issue 10)."""
