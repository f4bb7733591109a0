"""Database access: tables, engines, migrations and bulk writes."""
