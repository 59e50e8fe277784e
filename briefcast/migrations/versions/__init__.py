"""The revisions, oldest first; each file's tables are frozen copies, never imports."""
