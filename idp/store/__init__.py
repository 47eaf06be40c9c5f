"""Storage: the tables, the database connection and the schema migrations."""
