"""A run folder, owned here alone: its names and paths (layout), the records it reads into
(records), writing it (write), reading it back (read, evaluation_file, fields), the same
records from results in memory (from_results), and a suite task's own config (task_config)."""
