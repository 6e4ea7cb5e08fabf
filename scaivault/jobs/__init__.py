"""Background jobs run by APScheduler (identity sync, rotation, lease expiry, renewals)."""
