"""The plant: its configuration file, validation, and the device registry in the database."""
